"""The figures behind ``tests/test_toyworld_model.py``, printed: what its assertions hold on a checkpoint.

    .venv/bin/python scripts/toyworld_checks.py --seed 12 --questions 250
    .venv/bin/python scripts/toyworld_checks.py --break splice        # or positions; --model DIR: another checkpoint

Runs the test module's own helpers (``tests/test_toyworld_model.py``: the nouns stage, the adapter,
the same questions) and prints per benchmark the unpruned accuracy with its 95% Wilson interval,
ICCTP and CLS top-k at 16 tokens, the paired ICCTP − CLS difference, the evidence-ablation accuracy,
the coverage lead per question type, and the coverage with no noun phrase. ``--break`` applies one
defect on purpose, to show which assertions catch it:

- ``splice``: off by one token (the ``<image>`` embedding kept, the next text token dropped);
- ``positions``: the visual tokens share the ``<image>`` token's position and the text after them
  continues as if the image were one token.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import test_toyworld_model as T  # noqa: E402
import torch  # noqa: E402

from pipeline.fixtures import FRESH_QUESTIONS, FRESH_SEED, tiny_model_path  # noqa: E402
from pipeline.fixtures import toyworld as tw  # noqa: E402
from pipeline.model import load_vlm, steps  # noqa: E402
from pipeline.stages import nouns as nouns_stage  # noqa: E402


def break_splice() -> None:
    steps.splice = lambda text, pos, visual: torch.cat([text[: pos + 1], visual.to(text.dtype), text[pos + 2:]])


def break_positions() -> None:
    real = steps.assemble

    def assemble(model, text_ids, image_pos, visuals, kept):
        out = real(model, text_ids, image_pos, visuals, kept)
        length = out.positions.shape[1]
        for row, (ids, pos, keep) in enumerate(zip(text_ids, image_pos, kept)):
            m = keep.indices.numel() if keep.vision_tokens is None else keep.vision_tokens.shape[0]
            m += 0 if keep.merged is None else keep.merged.shape[0]
            start = length - (len(ids) - 1 + m) + pos
            p = out.positions[row]
            p[start:start + m] = p[start]
            p[start + m:] -= m - 1
        return out

    steps.assemble = assemble


def fmt(triple) -> str:
    return "{:.1f} [{:.1f}, {:.1f}]".format(*(100 * x for x in triple))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=FRESH_SEED)
    parser.add_argument("--questions", type=int, default=FRESH_QUESTIONS, help="per benchmark")
    parser.add_argument("--model", help="checkpoint directory (default: the committed toy-world model)")
    parser.add_argument("--break", dest="defect", choices=("splice", "positions"))
    args = parser.parse_args(argv)
    if args.defect:
        {"splice": break_splice, "positions": break_positions}[args.defect]()
    vlm = load_vlm(args.model or tiny_model_path("toyworld"))
    out = Path(tempfile.mkdtemp(prefix="toyworld-checks-"))

    def questions(**kwargs) -> dict[str, list[dict]]:
        paths = tw.write_tables(out, seed=args.seed, n=args.questions, **kwargs)
        return T.read_samples({name: {"test": str(path)} for name, path in paths.items()})

    samples, ablated = questions(), questions(prefix="ablated_", ablate=True)
    print(f"seed {args.seed}, {args.questions} + {args.questions} questions, model {args.model or 'fixture:toyworld'}"
          f"{', broken: ' + args.defect if args.defect else ''}\n")
    print("| benchmark | full | ICCTP@16 | CLS@16 | paired ICCTP − CLS | asked object removed | floor |")
    print("|---|---|---|---|---|---|---|")
    with vlm.reuse_vision():
        res = {(b, m): T.run(vlm, rows, m, 576 if m == "full" else T.BUDGET)
               for b, rows in samples.items() for m in ("full", "icctp", "cls")}
        for b in samples:
            print(f"| {b} | {fmt(T.accuracy(res[b, 'full']))} | {fmt(T.accuracy(res[b, 'icctp']))} "
                  f"| {fmt(T.accuracy(res[b, 'cls']))} | {fmt(T.paired(res[b, 'icctp'], res[b, 'cls']))} "
                  f"| {fmt(T.accuracy(T.run(vlm, ablated[b], 'full', 576)))} | {100 * T.FLOOR[b]:.0f} |")
        both = {m: [r for b in samples for r in res[b, m]] for m in ("icctp", "cls")}
        leads = [T.coverage(res[b, "icctp"], k) - T.coverage(res[b, "cls"], k)
                 for k, b in zip(T.KINDS, ("vqav2", "vqav2", "pope"), strict=True)]
        print(f"\ncoverage at 16: ICCTP {T.coverage(both['icctp']):.3f}, CLS {T.coverage(both['cls']):.3f}; "
              "lead per type: " + ", ".join(f"{k} {lead:+.3f}" for k, lead in zip(T.KINDS, leads, strict=True)))
        real = nouns_stage.question_phrases
        nouns_stage.question_phrases = lambda q, *a, **k: [([], lang) for _, lang in real(q, *a, **k)]
        none = [r for rows in samples.values() for r in T.run(vlm, rows, "icctp", max_new_tokens=1)]
        nouns_stage.question_phrases = real
    diff = T.paired_values([(a["coverage"], b["coverage"]) for a, b in zip(both["icctp"], none) if a["coverage"] is not None])
    print(f"no noun phrase: ICCTP coverage {T.coverage(none):.3f}; paired with phrases − without "
          f"{diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
