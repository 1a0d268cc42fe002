"""Does pruning turn fewer visual tokens into proportionally less prefill time? (CPU, one run.)

Language model of the real LLaVA-1.5-7B width (hidden 4096, MLP 11008, 32 heads, vocab 32064)
with 2 decoder layers, random init, fp32, inside a ``LlavaForConditionalGeneration`` whose vision
tower is tiny and unused: the visual tokens (576 x 4096, random) are given directly to the adapter's
public steps. For each budget, the kept tokens (``steps.select`` with "cls"; all at 576) are spliced
into the text embeddings at ``<image>`` and the batch is left-padded (``steps.assemble``), then run
through ``steps.generate`` up to the first token; the time is the adapter's own ``prefill_ms``
(decoder stack + LM head on the last position), and the process CPU time of the same call, which
other processes on a shared machine inflate much less. Repeats go round-robin over the budgets (order
rotated each round) after one warm-up, so load from other processes falls on every budget alike;
medians are reported. One torch thread by default (``--threads``): on this 2-vCPU machine a second
thread added no GEMM throughput. The last column, analytic prefill FLOPs / median CPU time, is the rate the hardware sustained.
``--profile`` adds a torch.profiler summary at 576 and 32 (top operators, matmul FLOP rate).

``--methods`` instead compares the methods at one budget per row: ``cls`` (pruned before the LLM)
and the in-LLM FastV, DART and SparseVLM (``kept`` budgets; on this 2-layer LM they prune after layer
0: K=1, SparseVLM ``layers: [0]``), each through the adapter's own path (the in-LLM ones with the
layer-K runner), against the analytic prefill FLOPs of the per-layer visual counts the runner
recorded (``llava_flops(..., layer_tokens=...)``). The selection work of the in-LLM methods (their
attention rows, similarities, clustering) is in the measured time but not in the FLOPs. Appends
under "## Prefill per method (bench_prefill --methods)".

Text: 60 tokens around ``<image>`` (35 before it, 25 after; the split does not change the cost), the
length of the LLaVA-1.5 template with a typical VQAv2 question ("What color is the umbrella?" + the
short-answer suffix) under the fixture BPE tokenizer; Vicuna's own tokenizer cannot be fetched
offline (a hand count with LLaMA's SentencePiece vocabulary gives 59). Goal: measured speedup (time
at 576 / time at the budget) >= 85% of the analytic prefill-FLOPs speedup of
``icctp.flops.llava_flops`` for this 2-layer config, at every budget and batch size. Prints a
Markdown table and appends it to BENCHMARKS.md under "## Prefill vs budget (bench_prefill)".

    .venv/bin/python scripts/bench_prefill.py [--repeats 3] [--threads 1] [--profile] [--no-write] [--methods]
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import append_to_section, cpu_model  # noqa: E402
from gpu_check import random_llava  # noqa: E402

from icctp.flops import llava_flops  # noqa: E402
from icctp.layer_pruners import DARTPruner, FastVPruner, SparseVLMPruner  # noqa: E402
from pipeline.model import steps  # noqa: E402
from pipeline.model.layer_prune import LayerPruneRunner  # noqa: E402
from pipeline.model.visual import VisualTokens  # noqa: E402

SECTION = "## Prefill vs budget (bench_prefill)"
INTRO = ("`scripts/bench_prefill.py`: prefill time of a 2-layer LLaVA-1.5-7B-width language model at each\n"
         "visual-token budget, through the adapter's assembly path, against the analytic FLOPs speedup\n"
         "(one block per run, newest last).")
BUDGETS = (576, 192, 128, 64, 32)
N_VISUAL = 576
TEXT_BEFORE, TEXT_AFTER = 35, 25  # text tokens before and after <image>
IMAGE_TOKEN_ID = 32000
GOAL = 0.85
METHOD_SECTION = "## Prefill per method (bench_prefill --methods)"
METHOD_INTRO = ("`scripts/bench_prefill.py --methods`: prefill time of each pruning method on a 2-layer LLaVA-1.5-7B-width\n"
                "language model against the analytic FLOPs of its per-layer visual-token counts (one block per run).")
PRUNERS = {"fastv": lambda b: FastVPruner(b, 2, K=1), "dart": lambda b: DARTPruner(b, 2, K=1),
           "sparsevlm": lambda b: SparseVLMPruner(b, 2, layers=[0], budget_mode="kept")}


def bench_config():
    """LLaVA-1.5-7B widths, 2 decoder layers; tiny CLIP tower (never run: visual tokens are given)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(image_size=336, patch_size=14, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=4, projection_dim=32)
    text = LlamaConfig(vocab_size=32064, hidden_size=4096, intermediate_size=11008, num_hidden_layers=2,
                       num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096,
                       rms_norm_eps=1e-5, tie_word_embeddings=False, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN_ID,
                       projector_hidden_act="gelu", vision_feature_layer=-2,
                       vision_feature_select_strategy="default", image_seq_length=N_VISUAL)


class Inputs:
    """``batch`` samples: text ids with one ``<image>``, visual tokens (n, d) and CLS attention (n,)."""

    def __init__(self, batch: int, hidden: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.text_ids = []
        for _ in range(batch):
            before = torch.randint(3, IMAGE_TOKEN_ID, (TEXT_BEFORE,), generator=g)
            after = torch.randint(3, IMAGE_TOKEN_ID, (TEXT_AFTER,), generator=g)
            self.text_ids.append(torch.cat([before, torch.tensor([IMAGE_TOKEN_ID]), after]))
        self.visual = torch.randn(batch, N_VISUAL, hidden, generator=g) * 0.02  # (batch, n, d) fp32
        self.cls_attn = torch.softmax(torch.randn(batch, N_VISUAL, generator=g) * 2, dim=1)  # (batch, n)

    def assembled(self, model, budget: int) -> steps.Assembled:
        """Kept visual tokens spliced at ``<image>`` and left-padded (``steps.select`` + ``steps.assemble``)."""
        grid, fixed = torch.arange(N_VISUAL), torch.empty(0, dtype=torch.long)
        visuals = [VisualTokens(v, [grid], [a], fixed) for v, a in zip(self.visual, self.cls_attn)]
        kept = steps.select(visuals, "cls", budget, seeds=[0] * len(visuals))
        return steps.assemble(model, [ids.tolist() for ids in self.text_ids], [TEXT_BEFORE] * len(visuals),
                              visuals, kept)


@torch.no_grad()
def prefill_seconds(model, inputs: Inputs, budget: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the adapter's prefill of the assembled batch at ``budget``.

    wall: the adapter's own ``prefill_ms``; CPU: process CPU time over the same ``steps.generate`` call
    (all threads), which other processes on a shared machine inflate much less than wall time.
    """
    assembled = inputs.assembled(model, budget)
    cpu = time.process_time()
    result = steps.generate(model, assembled, 1, -1, 0)
    return result.prefill_ms / 1e3, time.process_time() - cpu


@torch.no_grad()
def method_prefill(model, inputs: Inputs, method: str, budget: int) -> tuple[float, list[int]]:
    """(wall seconds, per-layer visual tokens of sample 0) of one prefill with ``method`` at ``budget``."""
    if method not in PRUNERS:
        assembled = inputs.assembled(model, budget)
        return steps.generate(model, assembled, 1, -1, 0).prefill_ms / 1e3, [min(budget, N_VISUAL)] * 2
    assembled = inputs.assembled(model, N_VISUAL)
    runner = LayerPruneRunner(model, PRUNERS[method](budget), [TEXT_BEFORE] * len(inputs.text_ids),
                              [N_VISUAL] * len(inputs.text_ids))
    result = steps.generate(model, assembled, 1, -1, 0, runner=runner)
    return result.prefill_ms / 1e3, runner.layer_tokens[0].tolist()


def methods_block(model, config, batch: int, repeats: int, budgets=(64, 16)) -> list[str]:
    """Markdown rows: per method x budget, median prefill ms, measured and analytic speedup vs unpruned."""
    inputs = Inputs(batch, config.text_config.hidden_size, seed=batch)
    n_text = TEXT_BEFORE + TEXT_AFTER
    cases = [("full", N_VISUAL)] + [(m, b) for b in budgets for m in ("cls", *PRUNERS)]
    method_prefill(model, inputs, "cls", budgets[-1])
    times = {c: [] for c in cases}
    layers = {}
    for r in range(repeats):
        for case in cases[r % len(cases):] + cases[: r % len(cases)]:
            seconds, layers[case] = method_prefill(model, inputs, "cls" if case[0] == "full" else case[0], case[1])
            times[case].append(seconds)
    full_time = statistics.median(times[cases[0]])
    full_flops = llava_flops(config, N_VISUAL, n_text, 1)["prefill"]
    rows = []
    for case in cases:
        wall = statistics.median(times[case])
        flops = llava_flops(config, N_VISUAL, n_text, 1, layer_tokens=layers[case])["prefill"]
        rows.append(f"| {batch} | {case[0]} | {case[1]} | {' / '.join(map(str, layers[case]))} | {1e3 * wall:.0f} "
                    f"| {full_time / wall:.2f}x | {full_flops / flops:.2f}x | {100 * full_time / wall * flops / full_flops:.0f}% |")
    return rows


def measure(model, batch: int, repeats: int) -> dict[int, tuple[float, float]]:
    """Median (wall, CPU) prefill seconds per budget; rounds go over all budgets in a rotated order."""
    inputs = Inputs(batch, model.config.text_config.hidden_size, seed=batch)
    prefill_seconds(model, inputs, BUDGETS[-1])
    times = {b: [] for b in BUDGETS}
    for r in range(repeats):
        order = BUDGETS[r % len(BUDGETS):] + BUDGETS[: r % len(BUDGETS)]
        for budget in order:
            times[budget].append(prefill_seconds(model, inputs, budget))
    return {b: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for b, t in times.items()}


def prefill_flops(config) -> dict[int, int]:
    """Analytic prefill FLOPs of one sample at each budget for ``config`` (first token included)."""
    n_text = TEXT_BEFORE + TEXT_AFTER
    return {b: llava_flops(config, min(b, N_VISUAL), n_text, 1)["prefill"] for b in BUDGETS}


def linear_flops(config, batch: int, n_tokens: int) -> int:
    """Matmul FLOPs of the linear layers (projections, MLP) on ``batch`` x ``n_tokens`` positions plus
    the LM head on each sample's last position."""
    text = config.text_config
    per_token = 2 * (4 * text.hidden_size**2 + 3 * text.hidden_size * text.intermediate_size)
    return batch * (text.num_hidden_layers * per_token * n_tokens + 2 * text.hidden_size * text.vocab_size)


def profile(model, batch: int) -> list[str]:
    """torch.profiler summary of one prefill at the largest and smallest budget: top operators by
    self CPU time and the FLOP rate the matrix multiplications reached."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    inputs = Inputs(batch, model.config.text_config.hidden_size, seed=batch)
    lines = []
    for budget in (BUDGETS[0], BUDGETS[-1]):
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            prefill_seconds(model, inputs, budget)
        events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
        total = sum(e.self_cpu_time_total for e in events)  # us
        top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:4]
        mm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm", "aten::bmm"))
        tokens = min(budget, N_VISUAL) + TEXT_BEFORE + TEXT_AFTER
        rate = linear_flops(model.config, batch, tokens) / (mm / 1e6) / 1e9
        shares = ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.0f}%" for e in top)
        lines.append(f"- profile, batch {batch}, budget {budget}: {shares}; matmul rate {rate:.0f} GFLOP/s")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds over all budgets, after one warm-up")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to BENCHMARKS.md")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (default 1: the 2 vCPUs here gave no more GEMM throughput "
                             "with 2, and one thread makes CPU time a clean measure on a shared machine)")
    parser.add_argument("--profile", action="store_true", help="profile one prefill per batch size at 576 and 32")
    parser.add_argument("--methods", action="store_true", help="compare cls, fastv, dart and sparsevlm at 64 and 16")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.methods:
        return main_methods(args)

    start = time.perf_counter()
    config = bench_config()
    model = random_llava(config, "cpu", torch.float32)
    flops = prefill_flops(config)
    analytic = {b: flops[BUDGETS[0]] / flops[b] for b in BUDGETS}
    n_text = TEXT_BEFORE + TEXT_AFTER
    table = [
        "| batch | budget | prefill tokens/sample | median prefill ms | measured speedup | analytic speedup "
        "| measured / analytic | CPU-time speedup | CPU-time / analytic | GFLOP/s (CPU time) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    worst, worst_cpu = float("inf"), float("inf")
    profiles = []
    for batch in args.batches:
        seconds = measure(model, batch, args.repeats)
        (wall_full, cpu_full) = seconds[BUDGETS[0]]
        for budget in BUDGETS:
            wall, cpu = seconds[budget]
            measured, measured_cpu = wall_full / wall, cpu_full / cpu
            worst = min(worst, measured / analytic[budget])
            worst_cpu = min(worst_cpu, measured_cpu / analytic[budget])
            table.append(f"| {batch} | {budget} | {min(budget, N_VISUAL) + n_text} | {1e3 * wall:.0f} "
                         f"| {measured:.2f}x | {analytic[budget]:.2f}x | {100 * measured / analytic[budget]:.0f}% "
                         f"| {measured_cpu:.2f}x | {100 * measured_cpu / analytic[budget]:.0f}% "
                         f"| {batch * flops[budget] / cpu / 1e9:.0f} |")
        if args.profile:
            profiles += profile(model, batch)
    elapsed = time.perf_counter() - start
    verdict = "met" if worst >= GOAL else "NOT met"
    verdict_cpu = "met" if worst_cpu >= GOAL else "NOT met"
    command = ".venv/bin/python scripts/" + " ".join([Path(sys.argv[0]).name] + [shlex.quote(a) for a in sys.argv[1:]])
    block = "\n".join([
        f"### {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{command}` ({elapsed:.0f} s)",
        f"- machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model()}, torch {torch.__version__} "
        f"(torch threads: {torch.get_num_threads()}), no GPU; load average at the end {os.getloadavg()[0]:.1f}",
        f"- model: LLaVA-1.5-7B LM widths (4096 / 11008 / 32 heads), 2 layers, fp32, sdpa; {n_text} text tokens + "
        f"kept visual tokens; medians of {args.repeats} round-robin rounds after one warm-up",
        f"- goal: measured speedup >= {100 * GOAL:.0f}% of the analytic prefill-FLOPs speedup at every budget",
        "",
        *table,
        "",
        f"Worst measured/analytic: wall clock {100 * worst:.0f}% (goal >= {100 * GOAL:.0f}%: {verdict}); "
        f"process CPU time {100 * worst_cpu:.0f}% ({verdict_cpu}).",
        *([""] + profiles if profiles else []),
        "",
    ])
    print(block)
    if not args.no_write:
        append_to_section(SECTION, INTRO, block)


def main_methods(args) -> None:
    start = time.perf_counter()
    config = bench_config()
    model = random_llava(config, "cpu", torch.float32)
    table = ["| batch | method | budget | visual tokens per layer (sample 0) | median prefill ms | measured speedup "
             "| analytic speedup | measured / analytic |", "|---:|---|---:|---|---:|---:|---:|---:|"]
    for batch in args.batches:
        table += methods_block(model, config, batch, args.repeats)
    command = ".venv/bin/python scripts/" + " ".join([Path(sys.argv[0]).name] + [shlex.quote(a) for a in sys.argv[1:]])
    block = "\n".join([
        f"### {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{command}` ({time.perf_counter() - start:.0f} s)",
        f"- machine: {os.cpu_count()} CPUs, {cpu_model()}, torch {torch.__version__} (threads: {torch.get_num_threads()}), "
        f"no GPU; load average at the end {os.getloadavg()[0]:.1f}",
        "- model: LLaVA-1.5-7B LM widths, 2 layers, fp32, sdpa; in-LLM methods prune after layer 0 (kept budgets); "
        f"speedups against the unpruned prefill; medians of {args.repeats} round-robin rounds after one warm-up",
        "",
        *table,
        "",
    ])
    print(block)
    if not args.no_write:
        append_to_section(METHOD_SECTION, METHOD_INTRO, block)


if __name__ == "__main__":
    main()
