"""Time icctp_select and the vision-side baselines at the LLaVA-1.5-7B shape against the LLM prefill.

Measures, in one run on this machine: median time of `icctp_select` ("exact" and "paper"
allocation) and of the loop reference of Algorithm 1 (tests/reference_algorithm.py; timed on
--reference-samples samples and scaled to the batch, it is linear in B); of the vision-side
baselines on CLIP-L/336 tower states (D=1024, 16 heads): FasterVLM (top-k of the CLS attention),
`visionzip_compress` (the official split of the budget), `prumerge_plus` (adaptive) and `prumerge`
(fixed ratio budget/576), and ToMe's merges (`tome_merge` at every one of the 23 layers of its r
schedule, on the layer's token count: the work ToMe adds to the tower, which itself shrinks); and the
forward of one 7B-shaped LlamaDecoderLayer (hidden 4096, intermediate 11008, 32 heads, random
init) on the kept sequence (budget visual + text tokens), times 32 layers. Goal: selection <= 1% of
that prefill. Prints a Markdown table and appends it to BENCHMARKS.md under "## Selection (icctp_select)".

    .venv/bin/python scripts/bench_select.py [--repeats 5] [--no-write]
"""
from __future__ import annotations

import argparse
import datetime
import os
import shlex
import sys
from pathlib import Path

import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import append_to_section, cpu_model, median_seconds  # noqa: E402
from reference_algorithm import reference_icctp  # noqa: E402

from icctp import prumerge, prumerge_plus, tome_merge, tome_schedule, visionzip_compress  # noqa: E402
from icctp.baselines import select_cls  # noqa: E402
from icctp.select import icctp_select  # noqa: E402
from icctp.visionzip import visionzip_split  # noqa: E402

SECTION = "## Selection (icctp_select)"
INTRO = ("`scripts/bench_select.py`: selection time at the LLaVA-1.5-7B shape, measured against a\n"
         "7B decoder layer forward on the kept sequence in the same run (one block per run, newest last).")
GOAL = 0.01
N_LAYERS = 32


def decoder_layer_seconds(batch: int, seq: int, repeats: int) -> float:
    """Median forward time of one random-init 7B-shaped Llama decoder layer on (batch, seq, 4096)."""
    config = LlamaConfig(
        hidden_size=4096, intermediate_size=11008, num_attention_heads=32, num_key_value_heads=32, num_hidden_layers=1
    )
    config._attn_implementation = "sdpa"
    layer = LlamaDecoderLayer(config, layer_idx=0).eval()
    rope = LlamaRotaryEmbedding(config)
    hidden = torch.randn(batch, seq, config.hidden_size)
    position_ids = torch.arange(seq).expand(batch, seq)
    with torch.inference_mode():
        position_embeddings = rope(hidden, position_ids)
        return median_seconds(lambda: layer(hidden, position_ids=position_ids, position_embeddings=position_embeddings), repeats)


def vision_baseline_seconds(B: int, n: int, budget: int, d: int, repeats: int) -> list[tuple[str, float]]:
    """Median times of the vision-side baselines on random CLIP-L-shaped tower states (a few CLS
    attention outliers per image, as real CLIP has)."""
    g = torch.Generator().manual_seed(1)
    D, H = 1024, 16
    hidden = torch.randn(B, n + 1, D, generator=g)
    cls_rows = torch.softmax(torch.randn(B, H, n + 1, generator=g) * 2, dim=-1)
    keys = torch.randn(B, H, n + 1, D // H, generator=g)
    last_keys = torch.randn(B, n + 1, D, generator=g)
    query = torch.randn(B, D, generator=g)
    for b in range(B):
        last_keys[b, torch.randperm(n, generator=g)[:12] + 1] += 3.0 * query[b] / query[b].norm()
    tokens = torch.randn(B, n, d, generator=g)
    cls_attn = cls_rows[:, :, 1:].mean(1)
    schedule = tome_schedule(23, n + 1, budget)
    merges = [(torch.randn(B, t, D, generator=g), torch.randn(B, t, D // H, generator=g), torch.ones(B, t, 1), r)
              for t, r in zip([n + 1 - sum(schedule[:i]) for i in range(23)], schedule)]
    calls = [
        ("fastervlm (select_cls)", lambda: select_cls(tokens, cls_attn, budget)),
        (f"visionzip_compress {visionzip_split(budget)}", lambda: visionzip_compress(hidden, cls_rows, keys,
                                                                                      *visionzip_split(budget))),
        ("prumerge_plus, adaptive", lambda: prumerge_plus(hidden[:, 1:], last_keys, query)),
        (f"prumerge, fixed ratio {budget}/{n}", lambda: prumerge(hidden[:, 1:], last_keys, query, False, budget / n)),
        ("tome_merge x 23 layers (r schedule)", lambda: [tome_merge(x, m, r, sz) for x, m, sz, r in merges]),
    ]
    return [(name, median_seconds(fn, repeats)) for name, fn in calls]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--n", type=int, default=576)
    parser.add_argument("--d", type=int, default=4096)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--budget", type=int, default=64)
    parser.add_argument("--text", type=int, default=60, help="text tokens in the prefill sequence")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per vectorized measurement")
    parser.add_argument("--layer-repeats", type=int, default=2)
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument(
        "--reference-samples", type=int, default=4, help="samples the loop reference runs on; its time is scaled to the batch"
    )
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to BENCHMARKS.md")
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    B, n, d, K = args.batch, args.n, args.d, args.k
    tokens = torch.randn(B, n, d, generator=g)  # (batch, visual, hidden) fp32
    cls_attn = torch.softmax(torch.randn(B, n, generator=g) * 2, dim=1)
    centers = torch.randn(B, K, d, generator=g)
    center_mask = torch.ones(B, K, dtype=torch.bool)

    with torch.inference_mode():
        exact = median_seconds(lambda: icctp_select(tokens, cls_attn, centers, center_mask, args.budget), args.repeats)
        paper = median_seconds(
            lambda: icctp_select(tokens, cls_attn, centers, center_mask, args.budget, allocation="paper"), args.repeats
        )
        n_ref = min(args.reference_samples, B)
        reference = median_seconds(
            lambda: [reference_icctp(tokens[b], cls_attn[b], list(centers[b]), args.budget) for b in range(n_ref)],
            args.reference_repeats,
            warmup=False,
        ) * (B / n_ref)
        vision = vision_baseline_seconds(B, n, args.budget, d, args.repeats)
    seq = args.budget + args.text
    layer = decoder_layer_seconds(B, seq, args.layer_repeats)
    prefill = layer * N_LAYERS

    rows = [
        ("icctp_select, exact", exact),
        ("icctp_select, paper", paper),
        (f"reference loop, exact (timed on {n_ref} samples, x {B / n_ref:g})", reference),
        *vision,
        (f"decoder layer forward ({B}x{seq} tokens)", layer),
        (f"prefill estimate (layer x {N_LAYERS})", prefill),
    ]
    table = ["| measurement | median ms | % of prefill |", "|---|---:|---:|"]
    table += [f"| {name} | {sec * 1e3:.1f} | {100 * sec / prefill:.3f} |" for name, sec in rows]
    verdict = "met" if max(exact, paper) <= GOAL * prefill else "NOT met"
    summary = (
        f"Selection/prefill: exact {100 * exact / prefill:.3f}%, paper {100 * paper / prefill:.3f}% "
        f"(goal <= {100 * GOAL:.0f}%: {verdict}); vectorized exact is {reference / exact:.0f}x faster than the loop reference."
    )
    cpu = cpu_model()
    command = ".venv/bin/python scripts/" + " ".join([Path(sys.argv[0]).name] + [shlex.quote(a) for a in sys.argv[1:]])
    block = "\n".join(
        [
            f"### {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
            "",
            f"- command: `{command}`",
            f"- machine: {os.cpu_count()} CPUs (`nproc`), {cpu}, torch {torch.__version__} ({torch.get_num_threads()} threads), no GPU, "
            f"load average at the end {os.getloadavg()[0]:.1f} (shared machine: timings are noisy)",
            f"- shape: B={B}, n={n}, d={d}, K={K}, budget={args.budget}, text={args.text}, fp32 CPU; "
            f"repeats: {args.repeats} (selection), {args.layer_repeats} (layer), each after one warm-up; "
            f"{args.reference_repeats} (reference, no warm-up)",
            f"- goal: selection time <= {100 * GOAL:.0f}% of the 32-layer 7B prefill on the kept sequence",
            "",
            *table,
            "",
            summary,
            "",
        ]
    )
    print(block)
    if not args.no_write:
        append_to_section(SECTION, INTRO, block)


if __name__ == "__main__":
    main()
