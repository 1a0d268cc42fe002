"""prepare: a benchmark split → Parquet input shards of the common sample schema (driver side).

Rows stream from ``pipeline.benchmarks.iter_samples`` (HF ``datasets``, streaming for large
splits), so the driver holds one shard at a time, never the split. A shard closes only between
two images, so all questions of an image land in the same shard, next to each other; the model
stage then encodes an image once per batch it appears in (usually one).
Shards are written atomically (temp file + rename); ``_SUCCESS.json`` marks a complete
benchmark, and a rerun reuses it as is.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.benchmarks import BENCHMARKS, fixture_data_files, iter_samples
from pipeline.fixtures import dataset_files
from pipeline.manifest import FIXTURE_PREFIX, BenchmarkSource
from pipeline.stages.schema import INPUT_SCHEMA

SUCCESS = "_SUCCESS.json"


def resolve_data_files(data_files: str | dict[str, str] | None) -> str | dict[str, str] | None:
    """``fixture:<name>`` → the built fixture's Parquet file(s); anything else unchanged."""
    if isinstance(data_files, str) and data_files.startswith(FIXTURE_PREFIX):
        name = data_files[len(FIXTURE_PREFIX):]
        return fixture_data_files(name) if name in BENCHMARKS else dataset_files(name)
    return data_files


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` so that the file either exists complete or not at all."""
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def write_json_atomic(record: dict, path: Path) -> None:
    """``json.dump`` to ``path`` via a temp file and rename (a kill never leaves half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)


def prepare_benchmark(
    name: str, source: BenchmarkSource, out_dir: Path, shard_rows: int, limit: int | None = None
) -> dict:
    """Write ``out_dir/shard-*.parquet`` for manifest entry ``name``; return its ``_SUCCESS.json`` record."""
    marker = out_dir / SUCCESS
    if marker.exists():
        return json.loads(marker.read_text())
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    digest = hashlib.sha256()
    rows: list[dict] = []
    n_rows = n_shards = 0
    seen: set[str] = set()

    def flush() -> None:
        nonlocal n_shards
        write_atomic(pa.Table.from_pylist(rows, schema=INPUT_SCHEMA), out_dir / f"shard-{n_shards:05d}.parquet")
        n_shards += 1
        rows.clear()

    samples = iter_samples(
        source.benchmark or name,
        hf_id=source.hf_id,
        config=source.config,
        split=source.split,
        data_files=resolve_data_files(source.data_files),
        streaming=source.streaming,
        revision=source.revision,
        limit=limit,
    )
    for sample in samples:
        sid = str(sample["sample_id"])
        if sid in seen:
            raise ValueError(f"benchmark {name!r}: duplicate sample_id {sid!r} in the source data")
        seen.add(sid)
        if rows and len(rows) >= shard_rows and sample["image_id"] != rows[-1]["image_id"]:
            flush()
        row = {field: sample.get(field) for field in INPUT_SCHEMA.names}
        row["benchmark"] = name
        row["sample_id"] = sid
        rows.append(row)
        n_rows += 1
        for key in ("sample_id", "question", "prompt", "targets"):
            digest.update(str(row[key]).encode() + b"\x1f")
        digest.update(hashlib.sha256(row["image"] or b"").digest())
    if rows:
        flush()
    record = {
        "benchmark": name,
        "source": source.model_dump(exclude_none=True),
        "n_rows": n_rows,
        "n_shards": n_shards,
        "fingerprint": digest.hexdigest(),
        "limit": limit,
    }
    write_json_atomic(record, marker)
    return record
