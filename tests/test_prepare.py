"""prepare: streaming or in-memory sources → input shards that never split an image, resumable."""
from __future__ import annotations

import json

import polars as pl
import pytest

from pipeline.benchmarks import fixture_data_files, iter_samples
from pipeline.manifest import BenchmarkSource
from pipeline.stages.prepare import SUCCESS, prepare_benchmark


def shards(out):
    return [pl.read_parquet(p) for p in sorted(out.glob("shard-*.parquet"))]


@pytest.mark.parametrize("streaming", [False, True])
def test_shards_hold_every_row_once_and_never_split_an_image(tmp_path, fixtures_root, streaming):
    src = BenchmarkSource(data_files="fixture:vqav2", streaming=streaming)
    record = prepare_benchmark("vqav2", src, tmp_path / "vqav2", shard_rows=4, limit=None)
    parts = shards(tmp_path / "vqav2")
    expected = [s["sample_id"] for s in iter_samples("vqav2", data_files=fixture_data_files("vqav2"),
                                                     streaming=streaming)]
    got = [sid for p in parts for sid in p["sample_id"]]
    assert got == expected and record["n_rows"] == len(expected) and record["n_shards"] == len(parts) > 1
    images = [set(p["image_id"]) for p in parts]
    assert all(not (a & b) for i, a in enumerate(images) for b in images[i + 1:]), "an image spans two shards"
    assert all(p.height >= 4 for p in parts[:-1])


def test_limit_streams_only_the_first_rows(tmp_path, fixtures_root):
    src = BenchmarkSource(data_files="fixture:vqav2", streaming=True)
    record = prepare_benchmark("vqav2", src, tmp_path / "v", shard_rows=64, limit=5)
    assert record["n_rows"] == 5 and sum(p.height for p in shards(tmp_path / "v")) == 5


def test_complete_prepare_is_reused_and_incomplete_is_redone(tmp_path, fixtures_root):
    out = tmp_path / "pope"
    src = BenchmarkSource(data_files="fixture:pope")
    first = prepare_benchmark("pope", src, out, shard_rows=8)
    (out / "shard-00000.parquet").write_bytes(b"not parquet")
    assert prepare_benchmark("pope", src, out, shard_rows=8) == first  # marker present: reused as is
    (out / SUCCESS).unlink()
    again = prepare_benchmark("pope", src, out, shard_rows=8)
    assert again["fingerprint"] == first["fingerprint"] and shards(out)[0].height > 0
    assert json.loads((out / SUCCESS).read_text())["n_rows"] == first["n_rows"]
