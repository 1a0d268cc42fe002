"""Cost of CIBA attribution: seconds per question on CPU for both feature spaces, and the projected GPU
cost of the paper's VQAv2 analysis.

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python scripts/bench_attribute.py [--append]

Measured here (official settings: 10 steps x 10 noise samples, both sides of each question):
1. shared space on the toy-world LLaVA (d 128) and on LLaVA-1.5-7B's shapes (576 x 4096 visual tokens,
   a 12-token question; no encoder follows this bottleneck, so random features of the real shapes cost
   what real ones do);
2. CLIP space on the tiny fixture CLIP and on CLIP-L/14-336's shapes (random weights: the cost does not
   depend on them), bottleneck after vision block 18 and text block 9. CLIP-L at full settings takes
   most of an hour per question on a loaded CPU, so it runs 1 and 2 steps with 1 noise sample: the
   difference of their counted FLOPs is one step of one sample, the rest the prefix, and a question
   costs prefix + 100 steps (steps x samples; the tail's cost grows linearly in the noise batch).
   FLOPs are counted by ``torch.utils.flop_counter`` (matmuls and convolutions); CPU seconds are those
   FLOPs at the FLOP rate the 1-step run achieved.
GPU projections (not measurements): CLIP = counted FLOPs / an assumed sustained throughput
(``--gpu-tflops``, default 200: about a fifth of an H100/H200's dense bf16 peak, usual for batched
fwd+bwd of mid-sized blocks); shared = memory-bound elementwise work with no matmul: ``PASSES`` float32
reads/writes of the (noise x tokens x channels) tensors per step at ``--gpu-tbps`` (default 4.8, an
H200's HBM bandwidth).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icctp.ciba import BottleneckConfig  # noqa: E402
from pipeline.attribution.spaces import ClipSpace, SharedSpace  # noqa: E402
from scripts.benchlib import append_to_section, cpu_model  # noqa: E402

VQAV2_VAL = 214_354
PASSES = 24  # float32 tensor passes per step of the shared bottleneck (forward + backward), an estimate
QUESTION = "What color is the wooden bench next to the dog?"


class _Embed(torch.nn.Module):
    """Stand-in LLaVA for ``SharedSpace``: only its input embedding matrix is used."""

    def __init__(self, vocab: int, d: int):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab, d)

    def get_input_embeddings(self):
        return self.embed


class _Tokens:
    """A fast-tokenizer stand-in: one token per word, with offsets."""

    is_fast = True

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=True):
        offsets, start = [], 0
        for word in text.split():
            start = text.index(word, start)
            offsets.append((start, start + len(word)))
            start += len(word)
        return {"input_ids": list(range(len(offsets))), "offset_mapping": offsets}


def timed(fn, repeat: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def shared_llava7b(batch: int) -> tuple[float, float]:
    """(CPU s per question, bytes moved per question by the ``PASSES`` model) at LLaVA-1.5-7B's shapes."""
    gen = torch.Generator().manual_seed(0)
    space = SharedSpace(_Embed(64, 4096), _Tokens(), BottleneckConfig(sigma=None), BottleneckConfig(sigma=None))
    visuals = [torch.randn(576, 4096, generator=gen) * 0.5 for _ in range(batch)]

    def run():
        space.attribute([QUESTION] * batch, visuals, list(range(batch)))
    config = BottleneckConfig()
    elements = config.steps * config.n_noise * (576 + len(QUESTION.split())) * 4096
    return timed(run) / batch, PASSES * 4 * elements


def shared_toyworld(n: int) -> float:
    import polars as pl

    from pipeline.fixtures import dataset_files, tiny_model_path
    from pipeline.model import load_vlm, steps

    vlm = load_vlm(tiny_model_path("toyworld"))
    table = pl.read_parquet(dataset_files("toyworld_vqav2")["test"]).head(n)
    samples = [{"image": r["image"]["bytes"], "prompt": r["question"], "question": r["question"]}
               for r in table.iter_rows(named=True)]
    prepared = vlm.preprocessor.prepare(samples, with_centers=False)
    visuals = steps.encode(vlm.model, [prepared.images[s.image_key] for s in prepared.samples])
    space = SharedSpace(vlm.model, vlm.tokenizer, BottleneckConfig(sigma=None), BottleneckConfig(sigma=None))
    return timed(lambda: space.attribute(table["question"].to_list(), [v.tokens for v in visuals],
                                         [s.seed for s in prepared.samples])) / n


def clip_space(model, tokenizer, config, layers, n: int) -> tuple[float, float]:
    """(CPU s per question, FLOPs per question) of ``ClipSpace`` at ``config``."""
    space = ClipSpace(model, tokenizer, config, config, *layers)
    gen = torch.Generator().manual_seed(0)
    pixels = [torch.randn(1, 3, 336, 336, generator=gen) for _ in range(n)]

    def run():
        space.attribute([QUESTION] * n, pixels, list(range(n)))
    return timed(run) / n, flops(run) / n


def clip_large():
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    from pipeline.fixtures import tiny_clip_path

    text = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                max_position_embeddings=77, projection_dim=768, vocab_size=49408, eos_token_id=1)
    vision = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                  image_size=336, patch_size=14, projection_dim=768)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=768)).eval()
    return model, AutoTokenizer.from_pretrained(tiny_clip_path())  # a CLIP-style BPE; 12 tokens either way


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--toy-questions", type=int, default=16)
    p.add_argument("--gpu-tflops", type=float, default=200.0)
    p.add_argument("--gpu-tbps", type=float, default=4.8)
    p.add_argument("--append", action="store_true", help="append the table to BENCHMARKS.md")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    official = BottleneckConfig()
    scale = official.steps * official.n_noise
    rows = []
    rows.append(("shared, toy-world LLaVA (d 128)", shared_toyworld(args.toy_questions), None))
    s, moved = shared_llava7b(batch=2)
    shared_gpu_h = moved / (args.gpu_tbps * 1e12) * VQAV2_VAL / 3600
    rows.append(("shared, LLaVA-1.5-7B shapes (576 x 4096)", s, None))
    from transformers import AutoTokenizer, CLIPModel

    from pipeline.fixtures import tiny_clip_path

    tiny = CLIPModel.from_pretrained(tiny_clip_path()).eval()
    s, _ = clip_space(tiny, AutoTokenizer.from_pretrained(tiny_clip_path()), official, (None, None), 4)
    rows.append(("clip, tiny fixture CLIP", s, None))
    model, tokenizer = clip_large()
    s1, f1 = clip_space(model, tokenizer, BottleneckConfig(steps=1, n_noise=1), (18, 9), 1)
    _, f2 = clip_space(model, tokenizer, BottleneckConfig(steps=2, n_noise=1), (18, 9), 1)
    step_f = f2 - f1
    total_f = f1 - step_f + scale * step_f
    # a loaded machine makes s2 - s1 noisy: the CPU rate of the 1-step run converts the counted FLOPs
    rows.append(("clip, CLIP-L/14-336 shapes, layers 18 / 9 (FLOPs counted; CPU s at the 1-step run's rate)",
                 total_f / (f1 / s1), total_f))
    load = os.getloadavg()[0]
    lines = [f"CPU: {cpu_model()}, {torch.get_num_threads()} torch thread(s), load average {load:.1f} at the end "
             f"(other jobs shared the machine); official settings (10 steps x 10 noise samples), both sides of a question.",
             "", "| space | CPU s / question | GFLOPs / question | projected GPU h for VQAv2 val (214,354 q) |",
             "|---|---|---|---|"]
    for name, seconds, count in rows:
        gpu = "–" if count is None else f"{count * VQAV2_VAL / (args.gpu_tflops * 1e12) / 3600:.2f}"
        if name.startswith("shared, LLaVA"):
            gpu = f"{shared_gpu_h:.2f} (memory-bound)"
        lines.append(f"| {name} | {seconds:.2f} | {'–' if count is None else f'{count / 1e9:,.0f}'} | {gpu} |")
    lines += ["", f"GPU projections, not measurements: CLIP = counted FLOPs / {args.gpu_tflops:g} TFLOP/s sustained; "
              f"shared = {PASSES} float32 passes over the (noise x tokens x channels) tensors per step / "
              f"{args.gpu_tbps:g} TB/s. The LLaVA encode the shared space needs is the evaluation's vision step."]
    block = "\n".join(lines)
    print(block)
    if args.append:
        append_to_section("## CIBA attribution (scripts/bench_attribute.py)",
                          "Seconds per question and projected GPU cost of the attribution job.", block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
