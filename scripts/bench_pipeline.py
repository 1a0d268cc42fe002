"""Throughput of our Ray pipeline vs the per-sample loop users run today, on the tiny model.

    .venv/bin/python scripts/bench_pipeline.py [--samples 2000] [--record]

Data: ``--samples`` synthetic VQAv2-schema rows, 3 questions per image (PIL scenes as in the
fixtures). Ours: ``run_eval`` from job start to ``metrics.parquet`` (local Ray: prepare, spaCy,
batched model, write, score), method ``full``. Baseline: one sample at a time through stock HF
``processor(...)`` + ``model.generate(...)``, no reuse. Both decode greedily; the predictions
must be identical. Then, on the same rows in-process, how much encoding each image once per batch
(instead of once per question) saves on its own. Prints one Markdown table; ``--record`` appends it
to BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import append_to_section, cpu_model  # noqa: E402

from pipeline.fixtures import datasets as fx  # noqa: E402
from pipeline.fixtures import tiny_model_path  # noqa: E402
from pipeline.manifest import Manifest  # noqa: E402
from pipeline.model import images, load_vlm  # noqa: E402
from pipeline.run import run_eval  # noqa: E402

MAX_NEW = 16
GOAL = 3.0
SECTION = "## Pipeline vs per-sample loop (bench_pipeline)"
INTRO = ("`scripts/bench_pipeline.py`: our Ray pipeline (job start to metrics) against one-sample-at-a-time\n"
         "stock HF generate on the tiny model, identical predictions required (one block per run, newest last).")


def synthetic_vqav2(path: Path, n_samples: int, seed: int = 0) -> None:
    """``n_samples`` VQAv2-schema rows, 3 questions per image, same-image rows adjacent."""
    rng, rows, i = random.Random(seed), [], 0
    while len(rows) < n_samples:
        scene = fx.random_scene(rng, fx.SIZES[i % len(fx.SIZES)], rng.randint(2, 4))
        image, image_id = fx.png(scene), 500_000 + i
        for j, (q, a, a_type, q_type, alts) in enumerate(fx.vqa_questions(rng, scene)[:3]):
            answers = fx.annotators(rng, a, alts)
            rows.append({"question_type": q_type, "multiple_choice_answer": a, "image_id": image_id,
                         "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": k + 1}
                                     for k, x in enumerate(answers)],
                         "answer_type": a_type, "question_id": image_id * 10 + j, "question": q, "image": image})
        i += 1
    fx.write_table(path, rows[:n_samples], fx.VQAV2_FEATURES)


def ours(data: Path, out: Path, batch_size: int, actors: int) -> tuple[float, pl.DataFrame]:
    manifest = Manifest.model_validate({
        "name": "bench", "model": {"path": "fixture:llava15", "dtype": "float32"},
        "benchmarks": {"vqav2": {"data_files": str(data)}}, "methods": [{"method": "full"}], "budgets": [576],
        "generation": {"max_new_tokens": MAX_NEW},
        "compute": {"batch_size": batch_size, "vlm_actors": actors, "shard_rows": 256, "block_rows": batch_size}})
    start = time.perf_counter()
    run_eval(manifest, out, address="local")
    elapsed = time.perf_counter() - start
    preds = pl.concat([pl.read_parquet(f) for f in sorted((out / "predictions").rglob("*.parquet"))])
    return elapsed, preds.select("sample_id", "prediction").sort("sample_id")


def per_sample_loop(data: Path) -> tuple[float, pl.DataFrame]:
    """The research-repo loop: one sample at a time, stock processor + generate, nothing reused."""
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    rows = pl.read_parquet(data).to_dicts()
    path = str(tiny_model_path("llava15"))
    start = time.perf_counter()
    model = LlavaForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(path)
    out = []
    for r in rows:
        prompt = f"{r['question']}\nAnswer the question using a single word or phrase."
        text = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
            add_generation_prompt=True)
        image = Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB")
        inputs = processor(images=image, text=text, return_tensors="pt")
        with torch.no_grad():
            ids = model.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False)
        answer = processor.tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        out.append({"sample_id": str(r["question_id"]), "prediction": answer.strip()})
    return time.perf_counter() - start, pl.DataFrame(out).sort("sample_id")


def vision_reuse(data: Path, batch_size: int) -> tuple[float, float]:
    """Seconds of ``generate`` over all rows with images encoded once per batch vs once per row.

    Every row gets its own decoded PIL image (decoding is then equal in both modes), so the
    difference is the vision tower alone.
    """
    from PIL import Image

    rows = pl.read_parquet(data).to_dicts()
    samples = [{"image": Image.open(io.BytesIO(r["image"]["bytes"])).convert("RGB"), "question": r["question"],
                "noun_spans": [], "prompt": f"{r['question']}\nAnswer the question using a single word or phrase."}
               for r in rows]
    vlm = load_vlm(str(tiny_model_path("llava15")))
    timings = []
    for dedupe in (True, False):
        key = images.image_key
        if not dedupe:  # every row its own key: the tower runs once per question
            counter = iter(range(10**9))
            images.image_key = lambda img, key=key, counter=counter: f"{key(img)}#{next(counter)}"
        try:
            start = time.perf_counter()
            for i in range(0, len(samples), batch_size):
                vlm.generate(samples[i:i + batch_size], method="full", max_new_tokens=MAX_NEW)
            timings.append(time.perf_counter() - start)
        finally:
            images.image_key = key
    return timings[0], timings[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--actors", type=int, default=2, help="model actors (one per core here)")
    p.add_argument("--record", action="store_true", help="append the table to BENCHMARKS.md")
    args = p.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "vqav2_synthetic.parquet"
        synthetic_vqav2(data, args.samples)
        t_ours, p_ours = ours(data, Path(tmp) / "run", args.batch_size, args.actors)
        t_loop, p_loop = per_sample_loop(data)
        same = p_ours.equals(p_loop)
        t_reuse, t_noreuse = vision_reuse(data, args.batch_size)
    n = args.samples
    table = "\n".join([
        "| measure | value |", "|---|---|",
        f"| samples (3 questions per image) | {n} |",
        f"| our pipeline, job start → metrics (s) | {t_ours:.1f} ({n / t_ours:.1f} samples/s) |",
        f"| per-sample stock HF generate loop (s) | {t_loop:.1f} ({n / t_loop:.1f} samples/s) |",
        f"| **throughput ratio (ours / loop)** | **{t_loop / t_ours:.2f}×** (goal ≥ {GOAL:.0f}×: "
        f"{'met' if t_loop / t_ours >= GOAL else 'not met'}) |",
        f"| identical predictions | {'yes' if same else 'NO'} |",
        f"| adapter, images encoded once per batch vs per question (s) | {t_reuse:.1f} vs {t_noreuse:.1f} "
        f"({t_noreuse / t_reuse:.2f}×) |",
    ])
    print(table)
    if not same:
        diff = p_ours.join(p_loop, on="sample_id").filter(pl.col("prediction") != pl.col("prediction_right"))
        print(f"{diff.height} predictions differ, e.g.\n{diff.head(5)}", file=sys.stderr)
    if args.record:
        append_to_section(SECTION, INTRO, f"### {dt.date.today()}\n\n{os.cpu_count()} cores ({cpu_model()}), "
                          f"torch {torch.__version__}, batch {args.batch_size}, {args.actors} model actors, {MAX_NEW} new "
                          f"tokens (greedy, EOS honoured), load average at the end {os.getloadavg()[0]:.1f}.\n"
                          f"Command: `.venv/bin/python scripts/bench_pipeline.py --samples {n} --record`\n\n{table}")
    sys.exit(0 if same else 1)


if __name__ == "__main__":
    main()
