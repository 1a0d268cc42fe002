"""Resume: what a run directory already holds, so a rerun does only the rest.

Prediction files are complete or absent (atomic writes); leftover temp files of a killed run
are removed. A row is identified by ``benchmark``, ``sample_id`` and its variant key.

The driver decides per input shard (polars, one pass over the ids of the written rows): a
finished shard is not read again, an untouched one is read whole, and only the rows of the few
partly written shards (the blocks in flight when the run stopped) travel to ``PendingFilter``
with the variant keys each still needs. No actor ever receives the set of done keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.stages.atomic import write_atomic
from pipeline.stages.write import partition_dir

if TYPE_CHECKING:  # the module is imported by the PendingFilter actor, which should not import torch (via the manifest)
    from pipeline.manifest import Variant


@dataclass
class ResumePlan:
    """What is left of a run.

    ``shards``: input shards with work left, in input order. ``pending``: for every row of a
    partly written shard, ``(benchmark, sample_id) → variant keys still to run`` (empty: row
    done); rows of the other listed shards need every key. Counts are prediction rows.
    """

    shards: list[str]
    pending: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    n_finished_shards: int = 0
    n_partial_shards: int = 0
    rows_done: int = 0
    rows_todo: int = 0


def remove_temp_files(predictions_dir: Path) -> int:
    """Delete the half-written temp files a killed run left behind; return how many."""
    if not predictions_dir.exists():
        return 0
    tmps = list(predictions_dir.rglob(".*.tmp"))
    for tmp in tmps:
        tmp.unlink()
    return len(tmps)


def done_keys(predictions_dir: Path, benchmarks: list[str], variants: list[Variant]) -> pl.LazyFrame:
    """Distinct ``(benchmark, sample_id, key)`` already written for these benchmarks × variants."""
    frames = []
    for bench in benchmarks:
        for v in variants:
            files = sorted(partition_dir(predictions_dir, bench, v.label, v.budget).glob("part-*.parquet"))
            if files:
                frames.append(pl.scan_parquet(files, hive_partitioning=False).select(
                    "benchmark", "sample_id", pl.lit(v.key).alias("key")))
    if not frames:
        return pl.LazyFrame(schema={"benchmark": pl.String, "sample_id": pl.String, "key": pl.String})
    return pl.concat(frames).unique()


def plan_resume(shards: list[Path], predictions_dir: Path, variants: list[Variant]) -> ResumePlan:
    """Per input shard: finished (skipped), untouched (read whole) or partial (its rows' pending keys).

    ``shards``: input shard files, each holding ``benchmark`` and ``sample_id`` columns;
    ``variants``: the run's. Temp files of a killed run are removed first.
    """
    remove_temp_files(predictions_dir)
    keys = [v.key for v in variants]
    paths = [str(s) for s in shards]
    inputs = pl.scan_parquet(paths, include_file_paths="shard").select("benchmark", "sample_id", "shard")
    benchmarks = inputs.select("benchmark").unique().collect()["benchmark"].to_list()
    done = done_keys(predictions_dir, benchmarks, variants)
    per_row = inputs.join(done.group_by("benchmark", "sample_id").agg(pl.len().alias("n_done")),
                          on=["benchmark", "sample_id"], how="left").with_columns(pl.col("n_done").fill_null(0))
    per_shard = per_row.group_by("shard").agg(pl.len().alias("rows"), pl.col("n_done").sum().cast(pl.Int64)).collect()
    status = {s: (rows * len(keys), n) for s, rows, n in per_shard.iter_rows()}
    plan = ResumePlan(shards=[s for s in paths if status[s][1] < status[s][0]])
    partial = [s for s in plan.shards if status[s][1] > 0]
    plan.n_finished_shards = len(paths) - len(plan.shards)
    plan.n_partial_shards = len(partial)
    plan.rows_done = sum(n for _, n in status.values())
    plan.rows_todo = sum(want - n for want, n in status.values())
    if partial:
        rows = inputs.filter(pl.col("shard").is_in(partial)).select("benchmark", "sample_id")
        todo = (rows.join(pl.LazyFrame({"key": keys, "order": range(len(keys))}), how="cross")
                .join(done, on=["benchmark", "sample_id", "key"], how="anti")
                .sort("order").group_by("benchmark", "sample_id", maintain_order=True).agg("key"))
        table = rows.join(todo, on=["benchmark", "sample_id"], how="left").collect()
        plan.pending = {(b, s): k or [] for b, s, k in table.iter_rows()}
    return plan


def drop_error_rows(predictions_dir: Path) -> int:
    """Remove every error row from the part files so that a resume runs those rows again.

    Each affected file is rewritten atomically without its error rows (deleted when nothing else
    is in it); a kill at any point leaves each row either kept or pending, never both. Returns
    the number of rows removed.
    """
    removed = 0
    if not predictions_dir.exists():
        return removed
    for path in sorted(predictions_dir.rglob("*.parquet")):
        errors = pq.read_table(path, columns=["error"]).column("error")
        n_errors = len(errors) - errors.null_count
        if not n_errors:
            continue
        if n_errors == len(errors):
            path.unlink()
        else:
            table = pq.read_table(path)
            write_atomic(table.filter(table.column("error").is_null()), path)
        removed += n_errors
    return removed


class PendingFilter:
    """Adds ``pending`` (variant keys still to run) and drops rows with nothing pending.

    ``pending``: ``(benchmark, sample_id) → keys`` for the rows of partly written shards; any
    other row still needs all ``keys``.
    """

    def __init__(self, pending: dict[tuple[str, str], list[str]], keys: list[str]):
        self.pending = pending
        self.keys = keys

    def __call__(self, batch: pa.Table) -> pa.Table:
        pending = [
            self.pending.get((b, s), self.keys)
            for b, s in zip(batch.column("benchmark").to_pylist(), batch.column("sample_id").to_pylist())
        ]
        batch = batch.append_column("pending", pa.array(pending, type=pa.list_(pa.string())))
        return batch.filter(pa.array([bool(p) for p in pending]))
