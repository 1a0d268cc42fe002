"""score: the written predictions → ``metrics.parquet`` (polars, on the driver).

Before scoring, the run is checked for completeness: every prepared input row has exactly one
prediction row per variant. A hole or a duplicate is an error that names benchmark, variant and
counts — a partial table is never scored as if it were whole. Checking and scoring read one
benchmark × variant partition at a time, so the driver's memory is bounded by one split's rows.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from pipeline.benchmarks import Benchmark, get_benchmark
from pipeline.manifest import BenchmarkSource, ManifestError, Variant, load_callable
from pipeline.stages.schema import METRICS_SCHEMA
from pipeline.stages.write import partition_dir


class IncompleteRunError(RuntimeError):
    """The predictions do not cover the inputs exactly once."""


SCORE_SCHEMA = {"benchmark": pl.String, "variant": pl.String, "method": pl.String, "budget": pl.Int32, "sample_id": pl.String,
                "prediction": pl.String, "error": pl.String, "targets": pl.String}
SCORE_COLUMNS = list(SCORE_SCHEMA)


def read_predictions(predictions_dir: Path) -> pl.DataFrame:
    """The columns scoring needs from every part file under ``predictions_dir`` (the rest stays on disk)."""
    files = sorted(predictions_dir.rglob("*.parquet"))
    if not files:
        raise IncompleteRunError(f"no prediction files under {predictions_dir}")
    return pl.scan_parquet(files, hive_partitioning=False).select(SCORE_COLUMNS).collect()


def check_complete(preds: pl.DataFrame, expected: dict[str, list[str] | pl.Series],
                   variants: list[Variant]) -> None:
    """Raise unless each benchmark × variant holds exactly the ``expected[benchmark]`` sample ids, once each."""
    problems = []
    for bench, ids in expected.items():
        want = pl.DataFrame({"sample_id": pl.Series(ids, dtype=pl.String)}).unique()
        for v in variants:
            got = preds.filter((pl.col("benchmark") == bench) & (pl.col("variant") == v.label)
                               & (pl.col("budget") == v.budget)).select("sample_id")
            have = got.unique()
            where = f"{bench} {v.key}"
            if got.height != have.height:
                problems.append(f"{where}: {got.height - have.height} duplicate rows")
            missing = want.join(have, on="sample_id", how="anti").sort("sample_id")["sample_id"]
            extra = have.join(want, on="sample_id", how="anti").sort("sample_id")["sample_id"]
            if missing.len() or extra.len():
                problems.append(f"{where}: {want.height - missing.len()} of {want.height} rows"
                                + (f", missing e.g. {missing.head(3).to_list()}" if missing.len() else "")
                                + (f", {extra.len()} unknown ids e.g. {extra.head(3).to_list()}" if extra.len() else ""))
    if problems:
        raise IncompleteRunError("predictions do not match the inputs:\n  " + "\n  ".join(problems))


def score_partitions(predictions_dir: Path, shards: dict[str, list[Path]], variants: list[Variant],
                     cards: dict[str, Benchmark] | None = None) -> pl.DataFrame:
    """Check and score one benchmark × variant partition at a time (the driver holds one, never the run).

    ``shards``: input shard files per benchmark entry; raises ``IncompleteRunError`` naming every
    hole or duplicate before anything is scored.
    """
    problems, frames = [], []
    for bench, files in shards.items():
        ids = pl.scan_parquet(files).select("sample_id").collect()["sample_id"]
        for v in variants:
            part = partition_dir(predictions_dir, bench, v.label, v.budget)
            preds = read_predictions(part) if part.exists() else pl.DataFrame(schema=SCORE_SCHEMA)
            try:
                check_complete(preds, {bench: ids}, [v])
            except IncompleteRunError as e:
                problems.extend(str(e).splitlines()[1:])
                continue
            frames.append(score_predictions(preds, cards))
    if problems:
        raise IncompleteRunError("predictions do not match the inputs:\n" + "\n".join(problems))
    return pl.concat(frames).sort("benchmark", "variant", "budget", "metric")


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
