"""The toy world's published figures: fresh questions through the real job, as a Markdown table.

    .venv/bin/python scripts/eval_toyworld.py --seed 7 --questions 500 --output /tmp/toyworld-eval

Writes the toy-world tables for ``--seed`` (``--questions`` VQAv2 and as many POPE questions, the
generator of ``pipeline/fixtures/toyworld.py``) and their evidence-ablation copies (the asked
object painted over; benchmark entries ``vqav2_ablated`` and ``pope_ablated``), runs
``manifests/toyworld.yaml`` on all four in one run through ``pipeline.run.run_eval`` (Ray, the
spaCy nouns stage, preprocess, the adapter, the writers and the official evaluators), and prints:

- per method x budget: VQAv2 accuracy and POPE accuracy (pooled) with 95% Wilson intervals, POPE's
  headline (mean F1 over categories, what ``jobs/eval_all.py`` prints), and evidence coverage over
  the questions about a present object (kept = mean share of its patches kept, ≥1 = share of
  questions with at least one kept); the last row is the ablation control;
- the paired ICCTP − CLS accuracy difference per budget, mean and 95% interval (normal
  approximation over per-question differences of the same questions).

Accuracies are the evaluators' (``metrics.parquet``); the per-question scores behind the paired
differences are recomputed from the predictions and must reproduce them exactly. Seed 0 with 200
questions are the tables of the default run (``jobs/eval_all.py``).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import polars as pl  # noqa: E402

from pipeline.evaluators.pope import parse_yes_no_expr  # noqa: E402
from pipeline.fixtures import toyworld as tw  # noqa: E402
from pipeline.manifest import Manifest, load_manifest  # noqa: E402
from pipeline.report.evidence import coverage_table  # noqa: E402
from pipeline.report.intervals import Z95, wilson  # noqa: E402
from pipeline.report.runs import scan_predictions  # noqa: E402
from pipeline.run import run_eval  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LABELS = {"full": "full", "icctp": "ICCTP", "cls": "CLS top-k", "random": "random"}
ACCURACY = {"vqav2": "accuracy", "pope": "pooled/accuracy"}  # the evaluators' metric per benchmark
ABLATION = "full, asked object removed"


ABLATED = "_ablated"  # suffix of the ablation copies' benchmark entries


def manifest_for(tables: dict[str, Path], model: str | None, methods: list[str] | None = None):
    """``manifests/toyworld.yaml`` on ``tables`` (``{entry: parquet}``; an entry ``<card>_ablated``
    is scored by ``<card>``), optionally another model and a subset of its variants."""
    manifest = load_manifest(REPO / "manifests" / "toyworld.yaml")
    data = manifest.model_dump(mode="json")
    data["benchmarks"] = {name: {"benchmark": name.removesuffix(ABLATED), "data_files": str(path)}
                          for name, path in tables.items()}
    if model:
        data["model"]["path"] = str(model)
    manifest = Manifest.model_validate(data)
    return manifest.restrict(methods=methods) if methods else manifest


def question_scores(run_dir: Path) -> pl.DataFrame:
    """Per prediction row: benchmark, variant, method, budget, sample_id, correct (0/1)."""
    rows = scan_predictions(run_dir).select(
        "benchmark", "variant", "method", "budget", "sample_id", "prediction", "targets").collect()
    answers = [json.loads(t) for t in rows["targets"]]
    gold = [a["answers"][0] if "answers" in a else a["answer"] for a in answers]
    pred = rows["prediction"].fill_null("").str.strip_chars().str.to_lowercase()
    yes_no = rows.select(parse_yes_no_expr(pl.col("prediction"))).to_series()
    correct = [(y if b.startswith("pope") else p) == g.strip().lower()
               for b, p, y, g in zip(rows["benchmark"], pred, yes_no, gold)]
    return rows.select("benchmark", "variant", "method", "budget", "sample_id").with_columns(
        pl.Series("correct", correct, pl.Float64))


def check_against_evaluators(scores: pl.DataFrame, metrics: pl.DataFrame) -> None:
    """Raise unless the per-question mean equals the evaluator's accuracy for every variant."""
    means = scores.group_by("benchmark", "variant", "budget").agg(pl.col("correct").mean())
    for bench, variant, budget, mean in means.iter_rows():
        value = metrics.filter((pl.col("benchmark") == bench) & (pl.col("variant") == variant)
                               & (pl.col("budget") == budget)
                               & (pl.col("metric") == ACCURACY[bench.removesuffix(ABLATED)]))["value"]
        if value.len() != 1 or abs(value[0] - mean) > 1e-9:
            raise RuntimeError(f"{bench} {variant}@{budget}: per-question accuracy {mean} != evaluator's {value.to_list()}")


def accuracy_cell(metrics: pl.DataFrame, bench: str, variant: str, budget: int) -> tuple[str, float]:
    row = metrics.filter((pl.col("benchmark") == bench) & (pl.col("variant") == variant) & (pl.col("budget") == budget)
                         & (pl.col("metric") == ACCURACY[bench.removesuffix(ABLATED)])).row(0, named=True)
    low, high = wilson(row["value"], row["n"])
    return f"{100 * row['value']:.1f} [{100 * low:.1f}, {100 * high:.1f}]", row["value"]


def headline_f1(metrics: pl.DataFrame, variant: str, budget: int, bench: str = "pope") -> str:
    value = metrics.filter((pl.col("benchmark") == bench) & (pl.col("variant") == variant)
                           & (pl.col("budget") == budget) & (pl.col("metric") == "mean_f1"))["value"][0]
    return f"{100 * value:.1f}"


def paired_difference(scores: pl.DataFrame, bench: str, a: str, b: str, budget: int) -> tuple[float, float, float]:
    """Mean and 95% interval (points) of variant ``a`` minus ``b`` over the same questions."""
    pick = scores.filter((pl.col("benchmark") == bench) & (pl.col("budget") == budget))
    pairs = pick.filter(pl.col("variant") == a).join(pick.filter(pl.col("variant") == b), on="sample_id")
    diff = (pairs["correct"] - pairs["correct_right"]).to_numpy()
    mean, half = diff.mean(), Z95 * diff.std(ddof=1) / math.sqrt(len(diff))
    return 100 * mean, 100 * (mean - half), 100 * (mean + half)


def figures(run_dir: Path, n: int) -> str:
    """The Markdown tables of the module docstring."""
    metrics = pl.read_parquet(run_dir / "metrics.parquet")
    scores = question_scores(run_dir)
    check_against_evaluators(scores, metrics)
    coverage = coverage_table(scan_predictions(run_dir).filter(~pl.col("benchmark").str.ends_with(ABLATED)))
    lines = ["| method | budget | VQAv2 acc [95%] | POPE acc [95%] | POPE F1 | kept | ≥1 |", "|---|---|---|---|---|---|---|"]
    for variant, method, budget, _, kept, any_kept in coverage.iter_rows():
        vqa, _ = accuracy_cell(metrics, "vqav2", variant, budget)
        pope, _ = accuracy_cell(metrics, "pope", variant, budget)
        lines.append(f"| {LABELS.get(method, variant)} | {budget} | {vqa} | {pope} | {headline_f1(metrics, variant, budget)} "
                     f"| {kept:.3f} | {any_kept:.3f} |")
    vqa, _ = accuracy_cell(metrics, "vqav2" + ABLATED, "full", 576)
    pope, _ = accuracy_cell(metrics, "pope" + ABLATED, "full", 576)
    lines.append(f"| {ABLATION} | 576 | {vqa} | {pope} | {headline_f1(metrics, 'full', 576, 'pope' + ABLATED)} | – | – |")
    lines += ["", "Paired ICCTP − CLS top-k (points, mean [95%] over the same questions):", "",
              "| budget | VQAv2 | POPE |", "|---|---|---|"]
    budgets = sorted(scores.filter(pl.col("method") == "icctp")["budget"].unique().to_list(), reverse=True)
    for budget in budgets:
        cells = ["{:+.1f} [{:+.1f}, {:+.1f}]".format(*paired_difference(scores, b, "icctp", "cls", budget))
                 for b in ("vqav2", "pope")]
        lines.append(f"| {budget} | {cells[0]} | {cells[1]} |")
    questions = coverage.filter(pl.col("method") == "full")["questions"][0]
    lines += ["", f"{n} VQAv2 + {n} POPE questions; coverage over the {questions} about a present object; "
              f"chance on the ablation row: VQAv2 {100 * (1 / 8 + 1 / 5) / 2:.1f} (1 of 8 colours, 1 of 5 patterns), "
              "POPE 50.0."]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, required=True, help="toy-world seed of the questions")
    parser.add_argument("--questions", type=int, required=True, help="questions per benchmark")
    parser.add_argument("--output", type=Path, help="working directory (default /tmp/toyworld-eval-S-N)")
    parser.add_argument("--model", help="another checkpoint directory (default: the manifest's, the committed model)")
    parser.add_argument("--methods", nargs="+", help="variants of the manifest to run (default: all; full, icctp "
                        "and cls are needed for the table)")
    parser.add_argument("--address", default="local", help="Ray address (default: a local Ray)")
    args = parser.parse_args(argv)
    if args.methods and {"full", "icctp", "cls"} - set(args.methods):
        parser.error(f"--methods must include full, icctp and cls (the table compares them), got {args.methods}")
    out = (args.output or Path(f"/tmp/toyworld-eval-{args.seed}-{args.questions}")).resolve()
    start = time.perf_counter()
    tables = tw.write_tables(out / "data", args.seed, args.questions)
    ablated = tw.write_tables(out / "data", args.seed, args.questions, prefix="ablated_", ablate=True)
    tables |= {name + ABLATED: path for name, path in ablated.items()}
    run_eval(manifest_for(tables, args.model, args.methods), out / "run", address=args.address)
    print(f"Toy world, seed {args.seed}, {args.questions} questions per benchmark, model "
          f"{args.model or 'fixture:toyworld'}\n")
    print(figures(out / "run", args.questions))
    print(f"\n{time.perf_counter() - start:.0f} s; run directory {out / 'run'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
