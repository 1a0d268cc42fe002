"""Time the image processor's pixel stacking: ``return_tensors="pt"`` (transformers stacks the per-image
arrays with ``np.array``) against ``pipeline.model.visual.processed_pixels`` (``torch.stack`` of the same
arrays), on the tiny LLaVA-1.5's CLIP processor and the tiny LLaVA-NeXT's any-resolution one.

Images: ``--images`` random RGB pictures (336 x 336 for LLaVA-1.5; 300-500 px sides, several grid counts,
for LLaVA-NeXT), processed as one batch; each way is timed ``--repeats`` times after one warm-up, median
kept. Prints a Markdown block and appends it to BENCHMARKS.md under "## Pixel stacking (bench_pixels)".

    .venv/bin/python scripts/bench_pixels.py [--images 64] [--repeats 5] [--no-write]
"""
from __future__ import annotations

import argparse
import datetime
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import append_to_section, cpu_model, median_seconds  # noqa: E402
from transformers import AutoProcessor  # noqa: E402

from pipeline.fixtures import ensure_fixtures, tiny_model_path  # noqa: E402
from pipeline.model.visual import processed_pixels  # noqa: E402

SECTION = "## Pixel stacking (bench_pixels)"
INTRO = ("`scripts/bench_pixels.py`: one batch through the image processor, pixels stacked by transformers\n"
         "(`return_tensors=\"pt\"`) or by `processed_pixels` (one block per run, newest last).")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only, leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    ensure_fixtures()
    rng = np.random.default_rng(0)
    sides = {"llava15": [(336, 336)] * args.images,
             "llava_next": [tuple(rng.integers(300, 501, 2)) for _ in range(args.images)]}
    lines = [f"{datetime.date.today()} · {cpu_model()} · torch {torch.__version__} · {torch.get_num_threads()} threads · "
             f"`{shlex.join(['scripts/bench_pixels.py', *(argv if argv is not None else sys.argv[1:])])}`", "",
             "| processor | images | return_tensors=\"pt\" (ms) | processed_pixels (ms) | speed-up |", "|---|---|---|---|---|"]
    for kind, shapes in sides.items():
        processor = AutoProcessor.from_pretrained(str(tiny_model_path(kind))).image_processor
        images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in shapes]
        stock = median_seconds(lambda: processor(images, return_tensors="pt"), args.repeats)  # noqa: B023
        ours = median_seconds(lambda: processed_pixels(processor, images), args.repeats)  # noqa: B023
        lines.append(f"| {type(processor).__name__} ({kind}) | {len(images)} | {stock * 1e3:.0f} | {ours * 1e3:.0f} "
                     f"| {stock / ours:.2f}x |")
    block = "\n".join(lines)
    print(block)
    if not args.no_write:
        append_to_section(SECTION, INTRO, block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
