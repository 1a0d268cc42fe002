"""Time the Chinese noun extractor (jieba POS tags) against the English one (spaCy) per question.

Questions: the MMBench dev fixture in English and its MMBench-CN translation (the same questions,
every circular rotation's row, as the nouns stage sees them), repeated to ``--questions`` each and
extracted in blocks of ``--block`` rows through ``pipeline.nlp.question_phrases`` (the stage's call).
Loading (spaCy model / jieba dictionary) is timed once, apart, and left out of the per-question time;
each extractor is timed ``--repeats`` times after one warm-up block, median kept. A third row times
jieba with its HMM on (``zh_noun_phrases`` on ``cut(HMM=True)``), the setting the pipeline does not use. Prints a Markdown
block and appends it to BENCHMARKS.md under "## Noun extraction (bench_nouns)".

    .venv/bin/python scripts/bench_nouns.py [--questions 2000] [--block 32] [--repeats 3] [--no-write]
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

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import append_to_section, cpu_model  # noqa: E402

from icctp.nouns import zh_noun_phrases  # noqa: E402
from pipeline.fixtures import ensure_fixtures  # noqa: E402
from pipeline.nlp import load_jieba, load_spacy, question_phrases  # noqa: E402

SECTION = "## Noun extraction (bench_nouns)"
INTRO = ("`scripts/bench_nouns.py`: noun-phrase extraction per question, Chinese (jieba) against English\n"
         "(spaCy) on the same MMBench questions in both languages (one block per run, newest last).")


def questions(name: str, n: int) -> list[str]:
    rows = pq.read_table(ensure_fixtures() / "data" / f"{name}.parquet", columns=["question"]).column(0).to_pylist()
    return (rows * (n // len(rows) + 1))[:n]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def extract_all(qs: list[str], lang: str, block: int) -> int:
    """Phrases found over ``qs``, extracted block by block as the nouns stage does."""
    if lang == "zh-hmm":
        return sum(len(zh_noun_phrases(q, load_jieba().cut)) for q in qs)
    return sum(len(p) for i in range(0, len(qs), block) for p, _ in question_phrases(qs[i:i + block], lang, block))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=2000)
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    load = {"en": timed(load_spacy), "zh": timed(load_jieba)}
    sets = {"en": questions("mmbench", args.questions), "zh": questions("mmbench_cn", args.questions)}
    sets["zh-hmm"], load["zh-hmm"] = sets["zh"], load["zh"]
    per_q, phrases = {}, {}
    for lang, qs in sets.items():
        extract_all(qs[:args.block], lang, args.block)  # warm-up
        runs = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            phrases[lang] = extract_all(qs, lang, args.block)
            runs.append(time.perf_counter() - start)
        per_q[lang] = statistics.median(runs) / len(qs) * 1000
    ratio = per_q["en"] / per_q["zh"]
    table = [
        "| extractor | load (s) | per question (ms) | phrases per question |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {load[lang]:.2f} | {per_q[lang]:.3f} | {phrases[lang] / len(sets[lang]):.2f} |"
          for lang, name in (("en", "English, spaCy en_core_web_sm"), ("zh", "Chinese, jieba posseg, HMM off (used)"),
                             ("zh-hmm", "Chinese, jieba posseg, HMM on"))),
    ]
    verdict = "met" if ratio >= 1 else "not met"
    command = ".venv/bin/python scripts/" + " ".join([Path(sys.argv[0]).name] + [shlex.quote(a) for a in sys.argv[1:]])
    block = "\n".join([
        f"### {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()} CPUs (`nproc`), {cpu_model()}, one process, load average at the end "
        f"{os.getloadavg()[0]:.1f} (shared machine: timings are noisy)",
        f"- questions: {args.questions} per language (MMBench / MMBench-CN dev fixtures, repeated), blocks of "
        f"{args.block}, median of {args.repeats} runs after one warm-up block",
        "",
        *table,
        "",
        f"Chinese extraction is **{ratio:.1f}x** the English speed per question (goal >= 1x, the English path's "
        f"speed: {verdict}); with the HMM on it would be {per_q['en'] / per_q['zh-hmm']:.1f}x.",
        "",
    ])
    print(block)
    if not args.no_write:
        append_to_section(SECTION, INTRO, block)


if __name__ == "__main__":
    main()
