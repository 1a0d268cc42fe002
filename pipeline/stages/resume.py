"""Resume: what a run directory already holds, so a rerun does only the rest.

Prediction files are complete or absent (atomic writes); leftover temp files of a killed run
are removed. A row is identified by ``benchmark``, ``sample_id`` and its variant key.
"""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.stages.vlm import variant_key

SEP = "\x1f"


def scan_done(predictions_dir: Path) -> set[str]:
    """Keys ``benchmark␟sample_id␟label@budget`` of every row already written."""
    done: set[str] = set()
    if not predictions_dir.exists():
        return done
    for tmp in predictions_dir.rglob(".*.tmp"):
        tmp.unlink()
    for path in sorted(predictions_dir.rglob("*.parquet")):
        t = pq.read_table(path, columns=["benchmark", "sample_id", "method", "budget"])
        for b, s, m, k in zip(*(t.column(c).to_pylist() for c in t.column_names)):
            done.add(SEP.join((b, s, variant_key(m, k))))
    return done


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
