"""Resume: what a run directory already holds, so a rerun does only the rest.

Prediction files are complete or absent (atomic writes); leftover temp files of a killed run
are removed. A row is identified by ``benchmark``, ``sample_id`` and its variant key.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.stages.prepare import write_atomic

SEP = "\x1f"


def scan_done(predictions_dir: Path) -> set[str]:
    """Keys ``benchmark␟sample_id␟label@budget`` (see ``Variant.key``) of every row already written."""
    done: set[str] = set()
    if not predictions_dir.exists():
        return done
    for tmp in predictions_dir.rglob(".*.tmp"):
        tmp.unlink()
    for path in sorted(predictions_dir.rglob("*.parquet")):
        t = pq.read_table(path, columns=["benchmark", "sample_id", "variant", "budget"])
        for b, s, v, k in zip(*(t.column(c).to_pylist() for c in t.column_names)):
            done.add(SEP.join((b, s, f"{v}@{k}")))
    return done


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
    """Adds ``pending`` (variant keys still to run) and drops rows with nothing pending."""

    def __init__(self, done: set[str], keys: list[str]):
        self.done = done
        self.keys = keys

    def __call__(self, batch: pa.Table) -> pa.Table:
        pending = [
            [k for k in self.keys if SEP.join((b, s, k)) not in self.done]
            for b, s in zip(batch.column("benchmark").to_pylist(), batch.column("sample_id").to_pylist())
        ]
        batch = batch.append_column("pending", pa.array(pending, type=pa.list_(pa.string())))
        return batch.filter(pa.array([bool(p) for p in pending]))
