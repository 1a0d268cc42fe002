"""score: the written predictions → ``metrics.parquet`` (polars, on the driver).

Before scoring, the run is checked for completeness: every prepared input row has exactly one
prediction row per variant. A hole or a duplicate is an error that names benchmark, variant and
counts — a partial table is never scored as if it were whole.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.benchmarks import get_benchmark

METRICS_SCHEMA = {
    "benchmark": pl.String, "method": pl.String, "budget": pl.Int32, "metric": pl.String,
    "value": pl.Float64, "n": pl.Int64, "n_errors": pl.Int64,
}


class IncompleteRunError(RuntimeError):
    """The predictions do not cover the inputs exactly once."""


SCORE_COLUMNS = ["benchmark", "method", "budget", "sample_id", "prediction", "error", "targets"]


def read_predictions(predictions_dir: Path) -> pl.DataFrame:
    """The columns scoring needs from every part file (the rest stays on disk)."""
    files = sorted(predictions_dir.rglob("*.parquet"))
    if not files:
        raise IncompleteRunError(f"no prediction files under {predictions_dir}")
    return pl.scan_parquet(files, hive_partitioning=False).select(SCORE_COLUMNS).collect()


def check_complete(preds: pl.DataFrame, expected: dict[str, int], variants: list[tuple[str, int]]) -> None:
    """Raise unless each benchmark × variant has exactly ``expected[benchmark]`` distinct rows."""
    counts = preds.group_by("benchmark", "method", "budget").agg(
        pl.len().alias("rows"), pl.col("sample_id").n_unique().alias("unique")
    )
    have = {(r["benchmark"], r["method"], r["budget"]): r for r in counts.iter_rows(named=True)}
    problems = []
    for bench, n in expected.items():
        for label, budget in variants:
            r = have.get((bench, label, budget), {"rows": 0, "unique": 0})
            if r["rows"] != r["unique"]:
                problems.append(f"{bench} {label}@{budget}: {r['rows'] - r['unique']} duplicate rows")
            if r["unique"] != n:
                problems.append(f"{bench} {label}@{budget}: {r['unique']} of {n} rows")
    if problems:
        raise IncompleteRunError("predictions do not match the inputs:\n  " + "\n  ".join(problems))


def score_predictions(preds: pl.DataFrame, cards: dict[str, str] | None = None) -> pl.DataFrame:
    """One row per benchmark × method × budget × metric; unscored benchmarks get metric null.

    ``cards`` maps a benchmark entry to the card that scores it (default: the entry's name).
    """
    rows = []
    for (bench, method, budget), df in preds.group_by("benchmark", "method", "budget", maintain_order=True):
        n, n_errors = df.height, df.height - df["error"].null_count()
        metrics = get_benchmark((cards or {}).get(bench, bench)).score(df)
        base = {"benchmark": bench, "method": method, "budget": budget, "n": n, "n_errors": n_errors}
        if not metrics:
            rows.append({**base, "metric": None, "value": None})
        rows.extend({**base, "metric": k, "value": float(v)} for k, v in metrics.items())
    return pl.DataFrame(rows, schema=METRICS_SCHEMA).sort("benchmark", "method", "budget", "metric")
