"""Regression verdict between runs (or between budgets of one run) from ``metrics.parquet``.

A candidate regresses against its baseline when, for a benchmark x variant x budget:
- a metric falls by more than its tolerance (points, :mod:`pipeline.report.tolerances`);
- a metric of the baseline is missing from the candidate;
- it lost rows (``n``, and sample ids when both runs kept predictions) or gained error rows.
Metrics present only in the candidate are listed, never a failure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.report import plots
from pipeline.report.efficiency import FlopsFn
from pipeline.report.headline import point_scale, run_cards
from pipeline.report.runs import read_metrics, read_run_info, scan_predictions
from pipeline.report.tables import ordered, scored, to_markdown
from pipeline.report.tolerances import Tolerances
from pipeline.report.writer import load_tables, run_plots

KEYS = ["benchmark", "variant", "budget"]
SHOWN_IDS = 5


@dataclass
class Comparison:
    """One baseline vs candidate comparison: a row per metric and the list of problems."""

    baseline: str
    candidate: str
    table: pl.DataFrame
    problems: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return bool(self.problems)


def row_counts(metrics: pl.DataFrame) -> pl.DataFrame:
    """Rows (``n``) and error rows per benchmark x variant x budget."""
    return metrics.group_by(KEYS).agg(pl.col("n").max(), pl.col("n_errors").max())


def compare_metrics(base: pl.DataFrame, cand: pl.DataFrame, tol: Tolerances,
                    cards: dict[str, str] | None = None) -> tuple[pl.DataFrame, list[str]]:
    """Per metric: base, cand, delta (points), tolerance, status; and the problems found.

    ``status``: ``ok``, ``regressed`` (fell by more than the tolerance), ``missing`` (not in the
    candidate) or ``new`` (only in the candidate). Row and error counts also cover unscored
    benchmarks (metric null). ``cards``: benchmark entry -> card (for the points scale).
    """
    cards = cards or {}
    joined = scored(base).join(scored(cand).drop("method"), on=[*KEYS, "metric"], how="full", coalesce=True,
                               suffix="_cand")
    joined = joined.with_columns(pl.col("method").fill_null(
        pl.col("variant").replace_strict(dict(cand.select("variant", "method").unique().iter_rows()), default=None)))
    scale = pl.col("benchmark").map_elements(lambda b: point_scale(cards.get(b, b)), return_dtype=pl.Float64)
    tolerance = pl.struct("benchmark", "metric").map_elements(
        lambda r: tol.for_metric(r["benchmark"], r["metric"]), return_dtype=pl.Float64)
    table = joined.with_columns(
        (pl.col("value") * scale).alias("base"),
        (pl.col("value_cand") * scale).alias("cand"),
        tolerance.alias("tolerance"),
    ).with_columns((pl.col("cand") - pl.col("base")).alias("delta")).with_columns(
        pl.when(pl.col("cand").is_null() & pl.col("base").is_not_null()).then(pl.lit("missing"))
        .when(pl.col("base").is_null() & pl.col("cand").is_not_null()).then(pl.lit("new"))
        .when(pl.col("cand").is_nan() | pl.col("base").is_nan()).then(
            pl.when(pl.col("cand").is_nan() & pl.col("base").is_nan()).then(pl.lit("ok"))
            .otherwise(pl.lit("regressed")))
        .when(pl.col("delta") < -pl.col("tolerance")).then(pl.lit("regressed"))
        .otherwise(pl.lit("ok")).alias("status"))
    table = ordered(table.select(*KEYS, "method", "metric", "base", "cand", "delta", "tolerance", "status"))

    problems = []
    for b, m, k, _, metric, v0, v1, d, t, status in table.filter(
            pl.col("status").is_in(["regressed", "missing"])).iter_rows():
        where = f"{b}/{m}@{k} {metric}"
        if status == "missing":
            problems.append(f"{where} missing (baseline {v0:.2f})")
        else:
            problems.append(f"{where} fell {v0:.2f} -> {v1:.2f} ({d:+.2f}, tolerance {t:g})")

    rows = row_counts(base).join(row_counts(cand), on=KEYS, how="left", suffix="_cand").with_columns(
        pl.col("n_cand").fill_null(0), pl.col("n_errors_cand").fill_null(pl.col("n_errors")))
    for b, m, k, n0, e0, n1, e1 in rows.sort(KEYS).iter_rows():
        if n0 - n1 > tol.max_lost_rows:
            problems.append(f"{b}/{m}@{k} lost {n0 - n1} row(s) ({n0} -> {n1})")
        if e1 - e0 > tol.max_new_errors:
            problems.append(f"{b}/{m}@{k} gained {e1 - e0} error row(s) ({e0} -> {e1})")
    return table, problems


def sample_ids(predictions: pl.LazyFrame) -> pl.DataFrame:
    return predictions.select(*KEYS, "sample_id").unique().collect()


def lost_samples(base: pl.LazyFrame | None, cand: pl.LazyFrame | None) -> list[str]:
    """Problems for sample ids of the baseline's predictions absent from the candidate's, per
    benchmark x variant x budget both runs predicted."""
    if base is None or cand is None:
        return []
    ids0, ids1 = sample_ids(base), sample_ids(cand)
    shared = ids0.select(KEYS).unique().join(ids1.select(KEYS).unique(), on=KEYS)
    lost = (ids0.join(shared, on=KEYS).join(ids1, on=[*KEYS, "sample_id"], how="anti")
            .sort(*KEYS, "sample_id").group_by(KEYS, maintain_order=True).agg("sample_id"))
    out = []
    for b, m, k, ids in lost.iter_rows():
        shown = ", ".join(ids[:SHOWN_IDS]) + (f", ... ({len(ids)} in all)" if len(ids) > SHOWN_IDS else "")
        out.append(f"{b}/{m}@{k} lost sample id(s) {shown}")
    return out


def compare_runs(baseline: Path, candidate: Path, tol: Tolerances) -> Comparison:
    """Compare the candidate run directory with the baseline run directory."""
    table, problems = compare_metrics(read_metrics(baseline), read_metrics(candidate), tol,
                                      run_cards(read_run_info(candidate)))
    problems += lost_samples(scan_predictions(baseline), scan_predictions(candidate))
    return Comparison(str(baseline), str(candidate), table, problems)


def compare_budgets(run: Path, reference: int, budget: int, tol: Tolerances) -> Comparison:
    """Compare ``budget`` with ``reference`` inside one run (per benchmark x variant x metric;
    the ``budget`` column of the result holds ``budget``). When the reference is the unpruned
    model (only method ``full`` ran there), it is the baseline of every variant."""
    metrics = read_metrics(run)
    have = set(metrics["budget"].to_list())
    for k in (reference, budget):
        if k not in have:
            raise ValueError(f"{run}: budget {k} not in metrics (has {sorted(have)})")
    base = metrics.filter(pl.col("budget") == reference)
    cand = metrics.filter(pl.col("budget") == budget)
    if set(base["method"].to_list()) == {"full"}:
        base = pl.concat([base.with_columns(pl.lit(v).alias("variant"), pl.lit(m).alias("method"))
                          for v, m in cand.select("variant", "method").unique().sort("variant").iter_rows()])
    base = base.with_columns(pl.lit(budget, pl.Int64).alias("budget"))
    table, problems = compare_metrics(base, cand, tol, run_cards(read_run_info(run)))
    return Comparison(f"{run} @ budget {reference}", f"{run} @ budget {budget}", table, problems)


def verdict(comparisons: list[Comparison]) -> str:
    """The one-line verdict: ``REGRESSION: k problem(s): ...`` or ``OK: ...``."""
    problems = [p for c in comparisons for p in c.problems]
    checked = sum(c.table.height for c in comparisons)
    if problems:
        return f"REGRESSION: {len(problems)} problem(s): " + "; ".join(problems)
    return f"OK: {checked} metric(s) within tolerance, no row lost, no error gained"


def compare_markdown(comparisons: list[Comparison], figures: list[Path], out_dir: Path) -> str:
    """``compare.md``: verdict, problems, then a delta table per comparison and the plots."""
    lines = ["# Comparison", "", f"**{verdict(comparisons)}**", ""]
    for c in comparisons:
        lines += [f"## {c.candidate} vs {c.baseline}", ""]
        if c.problems:
            lines += ["Problems:", ""] + [f"- {p}" for p in c.problems] + [""]
        lines += ["Values in points (accuracies in %, MME in MME points); delta = candidate - baseline.", ""]
        lines += [to_markdown(c.table, {"base": 2, "cand": 2, "delta": 2, "tolerance": 2}), ""]
    for p in figures:
        lines += [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})", ""]
    return "\n".join(lines)


def comparison_plots(runs: list[Path], out_dir: Path, flops_fn: FlopsFn | None = None) -> list[Path]:
    """Accuracy vs budget of every run overlaid; retention and latency plots of the last run."""
    tables = [load_tables(run, flops_fn) for run in runs]
    heads = {}
    for i, t in enumerate(tables):
        if t.head is not None:
            heads[t.label if t.label not in heads else f"{t.label} ({i})"] = t.head
    figures = []
    if heads:
        figures.append(plots.accuracy_vs_budget(heads, out_dir / "accuracy_vs_budget.png"))
    return figures + run_plots(tables[-1], out_dir, accuracy=False)


def write_comparison(runs: list[Path], tol: Tolerances, out_dir: Path, budgets: tuple[int, int] | None = None,
                     flops_fn: FlopsFn | None = None, with_plots: bool = True) -> tuple[list[Comparison], Path]:
    """Compare ``runs[1:]`` each with ``runs[0]`` (or, with one run and ``budgets`` =
    (reference, budget), the two budgets of that run); write ``out_dir/compare.md`` and, with
    ``with_plots``, the plots (accuracy vs budget of every run overlaid, retention and latency of
    the last run). Returns the comparisons and the Markdown path."""
    if len(runs) == 1 and budgets is not None:
        comparisons = [compare_budgets(runs[0], *budgets, tol)]
    elif len(runs) >= 2 and budgets is None:
        comparisons = [compare_runs(runs[0], run, tol) for run in runs[1:]]
    else:
        raise ValueError("compare needs two or more runs, or one run and a (reference, budget) pair")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = comparison_plots(runs, out_dir, flops_fn) if with_plots else []
    path = out_dir / "compare.md"
    path.write_text(compare_markdown(comparisons, figures, out_dir) + "\n")
    return comparisons, path
