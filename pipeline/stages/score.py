"""score: the written predictions → ``metrics.parquet`` (polars, on the driver).

Before scoring, the run is checked for completeness: every prepared input row has exactly one
prediction row per variant. A hole or a duplicate is an error that names benchmark, variant and
counts — a partial table is never scored as if it were whole.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.benchmarks import Benchmark, get_benchmark
from pipeline.manifest import BenchmarkSource, ManifestError, Variant, load_callable
from pipeline.stages.schema import METRICS_SCHEMA



class IncompleteRunError(RuntimeError):
    """The predictions do not cover the inputs exactly once."""


SCORE_COLUMNS = ["benchmark", "variant", "method", "budget", "sample_id", "prediction", "error", "targets"]


def read_predictions(predictions_dir: Path) -> pl.DataFrame:
    """The columns scoring needs from every part file (the rest stays on disk)."""
    files = sorted(predictions_dir.rglob("*.parquet"))
    if not files:
        raise IncompleteRunError(f"no prediction files under {predictions_dir}")
    return pl.scan_parquet(files, hive_partitioning=False).select(SCORE_COLUMNS).collect()


def check_complete(preds: pl.DataFrame, expected: dict[str, list[str]], variants: list[Variant]) -> None:
    """Raise unless each benchmark × variant holds exactly the ``expected[benchmark]`` sample ids, once each."""
    problems = []
    for bench, ids in expected.items():
        want = set(ids)
        for v in variants:
            got = preds.filter((pl.col("benchmark") == bench) & (pl.col("variant") == v.label)
                               & (pl.col("budget") == v.budget))["sample_id"]
            have = set(got.to_list())
            where = f"{bench} {v.key}"
            if got.len() != len(have):
                problems.append(f"{where}: {got.len() - len(have)} duplicate rows")
            if have != want:
                missing, extra = sorted(want - have), sorted(have - want)
                problems.append(f"{where}: {len(have & want)} of {len(want)} rows"
                                + (f", missing e.g. {missing[:3]}" if missing else "")
                                + (f", {len(extra)} unknown ids e.g. {extra[:3]}" if extra else ""))
    if problems:
        raise IncompleteRunError("predictions do not match the inputs:\n  " + "\n  ".join(problems))


def scoring_card(entry: str, source: BenchmarkSource) -> Benchmark:
    """The card that scores manifest ``entry``, with its judge (``module:callable``) when one is set."""
    card = get_benchmark(source.benchmark or entry)
    if source.judge is None:
        return card
    if not hasattr(card, "judge"):
        raise ManifestError(f"benchmarks.{entry}.judge: benchmark {card.name!r} is not graded by a judge")
    try:
        judge = load_callable(source.judge, f"benchmarks.{entry}.judge")
    except ValueError as e:
        raise ManifestError(str(e)) from None
    return type(card)(source.hf_id, source.config, source.split, judge=judge)


def score_predictions(preds: pl.DataFrame, cards: dict[str, Benchmark] | None = None) -> pl.DataFrame:
    """One row per benchmark × variant × budget × metric; unscored benchmarks get metric null.

    ``cards`` maps a benchmark entry to the card that scores it (default: the card of that name).
    """
    rows = []
    for (bench, variant, method, budget), df in preds.group_by("benchmark", "variant", "method", "budget",
                                                               maintain_order=True):
        n, n_errors = df.height, df.height - df["error"].null_count()
        card = (cards or {}).get(bench) or get_benchmark(bench)
        metrics = card.score(df)
        base = {"benchmark": bench, "variant": variant, "method": method, "budget": budget, "n": n,
                "n_errors": n_errors}
        if not metrics:
            rows.append({**base, "metric": None, "value": None})
        rows.extend({**base, "metric": k, "value": float(v)} for k, v in metrics.items())
    return pl.DataFrame(rows, schema=METRICS_SCHEMA).sort("benchmark", "variant", "budget", "metric")
