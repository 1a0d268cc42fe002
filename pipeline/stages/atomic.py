"""Files a run writes whole or not at all: written to a temp file beside the target, then renamed over it,
so a killed process leaves the old file or the new one, never half of one (plus a ``.*.tmp`` file, which
``pipeline.stages.resume.remove_temp_files`` deletes)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def write_atomic(table: pa.Table, path: Path, **options) -> None:
    """Write ``table`` to ``path`` as Parquet (``options``: ``pq.write_table``'s)."""
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp, **options)
    os.replace(tmp, path)


def write_json_atomic(record: dict, path: Path) -> None:
    """``json.dump`` ``record`` to ``path``."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
