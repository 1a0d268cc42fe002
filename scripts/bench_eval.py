"""Time polars ``vqa_accuracy`` (TextVQA rule) and ``vqav2_accuracy`` (VQA server rule) against the
per-row Python references on VQAv2-val-sized data.

    .venv/bin/python scripts/bench_eval.py            # 214,354 rows, print the timings and the ratio
    .venv/bin/python scripts/bench_eval.py --record   # also append a dated section to BENCHMARKS.md

The rows are synthetic but shaped like VQAv2 val: 10 human answers per question, mostly agreeing
("yes"/"no", counts, colours, objects), with capitals, articles, number words, contractions,
punctuation, decimals and thousands separators; predictions styled like a chat model's output.
Scores must be identical (asserted). The official float-sum loop is also run on the first rows to
show the largest difference to it.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import random
import sys
import time
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import append_to_section, cpu_model  # noqa: E402

from pipeline.evaluators.vqa import normalize_expr, vqa_accuracy, vqa_accuracy_frame  # noqa: E402
from pipeline.evaluators.vqa_eval import vqav2_accuracy  # noqa: E402
from tests import reference_evaluators as ref  # noqa: E402

N_ROWS = 214_354  # VQAv2 val questions
SECTION = "## Evaluators (bench_eval)"
GOAL = 10.0
INTRO = (
    "`scripts/bench_eval.py`: polars `vqa_accuracy` (and, from 2026-12, `vqav2_accuracy`, the VQA server "
    "rule) against the per-row Python references "
    "(`tests/reference_evaluators.py`) on 214,354 synthetic VQAv2-val-shaped rows, identical scores "
    f"asserted; goal >= {GOAL:.0f}x faster (one block per run, newest last)."
)

COLOURS = ["red", "blue", "white", "black", "green", "yellow", "brown", "gray", "orange", "pink", "purple", "tan"]
OBJECTS = [
    "dog", "cat", "man", "woman", "frisbee", "pizza", "skateboard", "surfboard", "umbrella", "kite", "bus",
    "train", "giraffe", "elephant", "tennis racket", "baseball bat", "fire hydrant", "stop sign", "t-shirt",
    "hot dog", "cell phone", "laptop", "toilet", "clock", "bench", "horse", "zebra", "sheep", "banana",
]
PHRASES = [
    "don't know", "dont know", "it's raining", "st. louis", "10:30", "1,000", "$5.00", "3.5", "yes!", "no.",
    "left side", "on table", "in the sky", "black and white", "n/a", "wii", "mcdonald's", "coca-cola",
    "(none)", "at the beach", "playing tennis", "eating", "sunny", "winter", "nighttime", "2:00", "100%",
]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "none"]


def _answer(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.38:
        return rng.choice(["yes", "no"])
    if r < 0.50:
        return str(rng.choice([0, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6, 10, 12, 20, 100]))
    if r < 0.54:
        return rng.choice(NUMBER_WORDS)
    if r < 0.66:
        return rng.choice(COLOURS)
    if r < 0.86:
        return rng.choice(["", "", "a ", "the "]) + rng.choice(OBJECTS) + rng.choice(["", "", "s"])
    if r < 0.96:
        return rng.choice(PHRASES)
    return f"{rng.choice(COLOURS)} {rng.choice(OBJECTS)} {rng.randint(0, 999)}"


def _styled(text: str, rng: random.Random) -> str:
    r = rng.random()
    if r < 0.3:
        return text.capitalize()
    if r < 0.4:
        return text.capitalize() + "."
    if r < 0.45:
        return f"The answer is {text}."
    if r < 0.5:
        return text.upper()
    return text


def synthetic_rows(n: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """``n`` predictions and ``n`` lists of 10 answers (a majority answer plus noise per question)."""
    rng = random.Random(seed)
    predictions, answers = [], []
    for _ in range(n):
        majority = _answer(rng)
        agree = rng.choice([10, 10, 9, 8, 7, 6, 5, 4, 3, 2])
        gts = [majority if i < agree else _answer(rng) for i in range(10)]
        rng.shuffle(gts)
        gts = [_styled(g, rng) if rng.random() < 0.1 else g for g in gts]
        predictions.append(_styled(majority if rng.random() < 0.7 else _answer(rng), rng))
        answers.append(gts)
    return predictions, answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=N_ROWS)
    parser.add_argument("--official-rows", type=int, default=20_000, help="rows also scored by the float-sum loop")
    parser.add_argument("--record", action="store_true", help=f"append the result to BENCHMARKS.md ({SECTION})")
    args = parser.parse_args()

    predictions, answers = synthetic_rows(args.rows)
    n_unique = len({a for gts in answers for a in gts} | set(predictions))
    print(f"{args.rows:,} rows, 10 answers each, {n_unique:,} distinct strings")

    start = time.perf_counter()
    df = pl.DataFrame({"prediction": predictions, "answers": answers})
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    frame_scores = vqa_accuracy_frame(df).to_list()
    frame_s = time.perf_counter() - start
    start = time.perf_counter()
    list_scores = vqa_accuracy(predictions, answers)
    list_s = time.perf_counter() - start
    every = pl.concat([df["prediction"], df["answers"].explode()]).to_frame("text")
    start = time.perf_counter()
    every.select(normalize_expr("text"))
    every_s = time.perf_counter() - start
    start = time.perf_counter()
    ref_scores = [ref.vqa_accuracy(p, a) for p, a in zip(predictions, answers)]
    ref_s = time.perf_counter() - start
    start = time.perf_counter()
    server_scores = vqav2_accuracy(predictions, answers)
    server_s = time.perf_counter() - start
    start = time.perf_counter()
    server_ref = [ref.vqav2_accuracy(p, a) for p, a in zip(predictions, answers)]
    server_ref_s = time.perf_counter() - start

    assert frame_scores == ref_scores, "polars and reference scores differ"
    assert list_scores == ref_scores, "vqa_accuracy (lists) and reference scores differ"
    assert server_scores == server_ref, "vqav2_accuracy and its reference differ"
    k = min(args.official_rows, args.rows)
    official = [ref.vqa_accuracy_official(p, a) for p, a in zip(predictions[:k], answers[:k])]
    max_diff = max((abs(a - b) for a, b in zip(official, ref_scores[:k])), default=0.0)
    mean = sum(ref_scores) / len(ref_scores)

    ratio_frame, ratio_list, ratio_server = ref_s / frame_s, ref_s / list_s, server_ref_s / server_s
    now = datetime.datetime.now(datetime.UTC)
    report = "\n".join([
        f"### {now:%Y-%m-%d %H:%M} UTC — polars vqa_accuracy and vqav2_accuracy vs per-row Python references",
        "",
        f"- machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}; polars {pl.__version__}, "
        f"Python {platform.python_version()}; load average at the end {os.getloadavg()[0]:.1f} "
        "(shared machine: timings are noisy, the ratio is measured within one run)",
        f"- command: `.venv/bin/python scripts/bench_eval.py{' --record' if args.record else ''}`"
        + (f" with `--rows {args.rows}`" if args.rows != N_ROWS else ""),
        f"- data: {args.rows:,} synthetic VQAv2-val-shaped rows, 10 answers each, {n_unique:,} distinct strings; "
        f"mean accuracy {mean:.4f}",
        f"- per-row Python reference: {ref_s:.2f} s",
        f"- polars `vqa_accuracy_frame` on a DataFrame: {frame_s:.2f} s (building the DataFrame from lists: {build_s:.2f} s)",
        f"- polars `vqa_accuracy` on Python lists (conversion included): {list_s:.2f} s",
        f"- polars `normalize_expr` on all {every.height:,} strings, without the deduplication that "
        f"`vqa_accuracy_frame` does: {every_s:.2f} s",
        f"- speed-up over the reference: {ratio_frame:.1f}x (frame), {ratio_list:.1f}x (lists); goal >= {GOAL:.0f}x: "
        f"{'met' if min(ratio_frame, ratio_list) >= GOAL else 'NOT met'}",
        f"- VQA server rule (`vqav2_accuracy` on lists): {server_s:.2f} s vs its per-row reference {server_ref_s:.2f} s: "
        f"{ratio_server:.1f}x (goal >= {GOAL:.0f}x: {'met' if ratio_server >= GOAL else 'NOT met'}); "
        f"mean accuracy {sum(server_ref) / len(server_ref):.4f}",
        f"- scores identical on all rows (asserted); largest difference to the official float-sum loop on the "
        f"first {k:,} rows: {max_diff:.1e}",
    ])
    print(report)
    if args.record:
        append_to_section(SECTION, INTRO, report)
        print(f"appended to {ROOT / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()
