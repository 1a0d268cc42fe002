"""prepare: a benchmark split → Parquet input shards of the common sample schema (driver side).

Rows stream from ``pipeline.benchmarks.iter_samples`` (HF ``datasets``, streaming for large
splits), so the driver holds one shard at a time, never the split. A shard closes only between
two images, so all questions of an image land in the same shard, next to each other; the model
stage then encodes an image once per batch it appears in (usually one). A shard is two files: its
question rows, which name their image by the sha256 of its bytes, and its image file with each
distinct image once (layout and reasons: ``pipeline.stages.shard_images``).
Shards are written atomically (temp file + rename) as they fill; ``_SUCCESS.json`` marks a
complete benchmark, and a rerun reuses it as is. An unfinished benchmark resumes: ``_PREPARE.json``
records what its shards are cut from (source, limit, shard size), and a rerun with the same record
keeps the shards already written (each readable, numbered from 0 without a gap), skips their rows
in the source and writes the rest; with another record, or none, it starts over.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.benchmarks import BENCHMARKS, fixture_data_files, iter_samples
from pipeline.fixtures import dataset_files
from pipeline.manifest import FIXTURE_PREFIX, BenchmarkSource
from pipeline.stages.atomic import write_atomic, write_json_atomic
from pipeline.stages.schema import IMAGES_SCHEMA, INPUT_SCHEMA
from pipeline.stages.shard_images import IMAGES_DIR, KEY, ROW_GROUP_IMAGES, images_path

SUCCESS = "_SUCCESS.json"
PLAN = "_PREPARE.json"
DIGEST_FIELDS = ("sample_id", "question", "prompt", "targets")


def resolve_data_files(data_files: str | dict[str, str] | None) -> str | dict[str, str] | None:
    """``fixture:<name>`` → the built fixture's Parquet file(s); anything else unchanged."""
    if isinstance(data_files, str) and data_files.startswith(FIXTURE_PREFIX):
        name = data_files[len(FIXTURE_PREFIX):]
        return fixture_data_files(name) if name in BENCHMARKS else dataset_files(name)
    return data_files


def write_shard(out_dir: Path, index: int, rows: list[dict], images: dict[str, bytes]) -> None:
    """Write input shard ``index`` of ``out_dir``: its image file (``images``: key → encoded bytes, each
    image once), then its question ``rows`` (``INPUT_SCHEMA``), so a question file never lacks its images."""
    path = out_dir / f"shard-{index:05d}.parquet"
    images_path(path).parent.mkdir(exist_ok=True)
    table = pa.table({KEY: list(images), "image": list(images.values())}, schema=IMAGES_SCHEMA)
    write_atomic(table, images_path(path), row_group_size=ROW_GROUP_IMAGES, use_dictionary=[KEY],
                 write_statistics=[KEY])
    write_atomic(pa.Table.from_pylist(rows, schema=INPUT_SCHEMA), path)


def image_key(image: bytes | None) -> str | None:
    """The key of encoded image bytes in a shard's image file (hex sha256); None for a missing image."""
    return None if image is None else hashlib.sha256(image).hexdigest()


def prepare_benchmark(
    name: str, source: BenchmarkSource, out_dir: Path, shard_rows: int, limit: int | None = None
) -> dict:
    """Write ``out_dir/shard-*.parquet`` for manifest entry ``name``; return its ``_SUCCESS.json`` record.

    The fingerprint is the sha256 of the shards' own sha256 digests, in order; a shard's digest
    covers its rows' ``DIGEST_FIELDS`` and image bytes (through their sha256, the row's ``image_sha256``).
    """
    marker = out_dir / SUCCESS
    if marker.exists():
        return json.loads(marker.read_text())
    plan = {"source": source.model_dump(mode="json", exclude_none=True), "limit": limit, "shard_rows": shard_rows}
    shards = _finished_shards(out_dir, plan)
    if shards is None:
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        shards = []
        write_json_atomic({**plan, "shards": shards}, out_dir / PLAN)
    seen: set[str] = set()
    for i in range(len(shards)):
        seen.update(pq.read_table(out_dir / f"shard-{i:05d}.parquet", columns=["sample_id"])["sample_id"].to_pylist())
    resumed = len(seen)
    rows: list[dict] = []
    images: dict[str, bytes] = {}

    def flush() -> None:
        digest = hashlib.sha256()
        for row in rows:
            _digest(digest, row)
        write_shard(out_dir, len(shards), rows, images)
        shards.append({"rows": len(rows), "images": len(images), "digest": digest.hexdigest()})
        write_json_atomic({**plan, "shards": shards}, out_dir / PLAN)
        rows.clear()
        images.clear()

    samples = iter_samples(
        source.benchmark or name,
        hf_id=source.hf_id,
        config=source.config,
        split=source.split,
        data_files=resolve_data_files(source.data_files),
        streaming=source.streaming,
        revision=source.revision,
        limit=limit,
        skip=resumed,
    )
    for sample in samples:
        sid = str(sample["sample_id"])
        if sid in seen:
            raise ValueError(f"benchmark {name!r}: duplicate sample_id {sid!r} "
                             + (f"(in the source data, or the source changed since the {resumed} rows kept in "
                                f"{out_dir} were written: delete them to start over)" if resumed else
                                "in the source data"))
        seen.add(sid)
        if rows and len(rows) >= shard_rows and sample["image_id"] != rows[-1]["image_id"]:
            flush()
        row = {field: sample.get(field) for field in INPUT_SCHEMA.names}
        row["benchmark"] = name
        row["sample_id"] = sid
        row[KEY] = image_key(sample.get("image"))
        if row[KEY] is not None:
            images.setdefault(row[KEY], sample["image"])
        rows.append(row)
    if rows:
        flush()
    record = {
        "benchmark": name,
        "source": source.model_dump(exclude_none=True),
        "n_rows": sum(s["rows"] for s in shards),
        "n_shards": len(shards),
        "fingerprint": hashlib.sha256("".join(s["digest"] for s in shards).encode()).hexdigest(),
        "limit": limit,
    }
    write_json_atomic(record, marker)
    return record


def _digest(digest, row: dict) -> None:
    """Add one input row to a shard's digest (its text fields and its image's sha256; a missing image
    counts as empty bytes)."""
    for key in DIGEST_FIELDS:
        digest.update(str(row[key]).encode() + b"\x1f")
    digest.update(bytes.fromhex(row[KEY] or image_key(b"")))


def _finished_shards(out_dir: Path, plan: dict) -> list[dict] | None:
    """The shard records (rows, images, digest) of the shards an unfinished preparation of ``plan``
    left in ``out_dir`` and a rerun keeps: those its ``_PREPARE.json`` lists, from ``shard-00000`` up
    to the first whose question or image file is missing or unreadable; other shard files are
    deleted. None when ``out_dir`` holds no preparation of the same plan."""
    try:
        record = json.loads((out_dir / PLAN).read_text())
    except (OSError, ValueError):
        return None
    if {k: v for k, v in record.items() if k != "shards"} != plan:
        return None
    kept = []
    for i, shard in enumerate(record.get("shards", [])):
        path = out_dir / f"shard-{i:05d}.parquet"
        try:
            if (pq.read_metadata(path).num_rows != shard["rows"]
                    or pq.read_metadata(images_path(path)).num_rows != shard.get("images")):
                break
        except (OSError, ValueError, pa.ArrowException):
            break
        kept.append(shard)
    for files in (out_dir.glob("shard-*.parquet"), (out_dir / IMAGES_DIR).glob("images-*.parquet")):
        for path in sorted(files)[len(kept):]:
            path.unlink()
    write_json_atomic({**plan, "shards": kept}, out_dir / PLAN)
    return kept
