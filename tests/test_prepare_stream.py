"""Preparation streams and resumes: shards are written as they fill, and a rerun after a failure keeps
the finished shards, reads the source only past them and ends with the shards and fingerprint of an
uninterrupted preparation; another plan, or a shard its record does not list, is redone."""
from __future__ import annotations

import json

import polars as pl
import pytest

from pipeline.manifest import BenchmarkSource
from pipeline.stages import prepare
from pipeline.stages.prepare import PLAN, SUCCESS, prepare_benchmark
from pipeline.stages.shard_images import IMAGES_DIR, read_images

SOURCE = BenchmarkSource(data_files="fixture:vqav2", streaming=True)
REAL = prepare.iter_samples


class Blip(ConnectionError):
    pass


def failing_after(n: int, calls: list):
    """``iter_samples`` that records its ``skip`` and fails after yielding ``n`` samples (a network blip)."""
    def iter_samples(*args, **kwargs):
        calls.append(kwargs.get("skip", 0))
        for i, sample in enumerate(REAL(*args, **kwargs)):
            if i == n:
                raise Blip("connection reset")
            yield sample

    return iter_samples


def shard_ids(out) -> list[list[str]]:
    return [pl.read_parquet(p)["sample_id"].to_list() for p in sorted(out.glob("shard-*.parquet"))]


def test_a_failed_preparation_resumes_past_its_finished_shards(tmp_path, fixtures_root, monkeypatch):
    clean = prepare_benchmark("vqav2", SOURCE, tmp_path / "clean", shard_rows=4)
    out, calls = tmp_path / "resumed", []
    monkeypatch.setattr(prepare, "iter_samples", failing_after(15, calls))
    with pytest.raises(Blip):
        prepare_benchmark("vqav2", SOURCE, out, shard_rows=4)
    written = shard_ids(out)
    assert len(written) >= 2 and not (out / SUCCESS).exists()  # shards were written as they filled
    assert sum(map(len, written)) < 15
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-*.parquet")}

    monkeypatch.setattr(prepare, "iter_samples", failing_after(10**6, calls))
    record = prepare_benchmark("vqav2", SOURCE, out, shard_rows=4)
    assert calls == [0, sum(map(len, written))]  # the rerun skipped exactly the kept rows
    assert all((out / name).stat().st_mtime_ns == t for name, t in stamps.items())  # kept, not rewritten
    assert shard_ids(out) == shard_ids(tmp_path / "clean")
    assert record == clean


def test_a_shard_the_record_does_not_list_is_written_again(tmp_path, fixtures_root, monkeypatch):
    out, calls = tmp_path / "v", []
    monkeypatch.setattr(prepare, "iter_samples", failing_after(15, calls))
    with pytest.raises(Blip):
        prepare_benchmark("vqav2", SOURCE, out, shard_rows=4)
    record = json.loads((out / PLAN).read_text())
    dropped = record["shards"].pop()  # as if the run died between writing the shard and recording it
    (out / PLAN).write_text(json.dumps(record))
    monkeypatch.setattr(prepare, "iter_samples", failing_after(10**6, calls))
    done = prepare_benchmark("vqav2", SOURCE, out, shard_rows=4)
    assert calls[1] == sum(s["rows"] for s in record["shards"])
    assert done == prepare_benchmark("vqav2", SOURCE, tmp_path / "clean", shard_rows=4)
    assert dropped["rows"] > 0


def test_another_plan_starts_over(tmp_path, fixtures_root, monkeypatch):
    out, calls = tmp_path / "v", []
    monkeypatch.setattr(prepare, "iter_samples", failing_after(15, calls))
    with pytest.raises(Blip):
        prepare_benchmark("vqav2", SOURCE, out, shard_rows=4)
    monkeypatch.setattr(prepare, "iter_samples", failing_after(10**6, calls))
    record = prepare_benchmark("vqav2", SOURCE, out, shard_rows=6)
    assert calls[1] == 0
    assert record == prepare_benchmark("vqav2", SOURCE, tmp_path / "clean", shard_rows=6)


def test_an_image_file_without_its_questions_or_unreadable_is_written_again(tmp_path, fixtures_root, monkeypatch):
    out, calls = tmp_path / "v", []
    monkeypatch.setattr(prepare, "iter_samples", failing_after(15, calls))
    with pytest.raises(Blip):
        prepare_benchmark("vqav2", SOURCE, out, shard_rows=4)
    written = shard_ids(out)
    assert len(written) >= 2
    # as if killed between writing a shard's image file and its question file, and one kept image file broken
    (out / IMAGES_DIR / f"images-{len(written):05d}.parquet").write_bytes(b"half a shard")
    (out / IMAGES_DIR / "images-00001.parquet").write_bytes(b"not parquet")
    monkeypatch.setattr(prepare, "iter_samples", failing_after(10**6, calls))
    done = prepare_benchmark("vqav2", SOURCE, out, shard_rows=4)
    assert calls[1] == len(written[0])  # only shard 0 is kept whole
    clean = tmp_path / "clean"
    assert done == prepare_benchmark("vqav2", SOURCE, clean, shard_rows=4)
    assert shard_ids(out) == shard_ids(clean)
    assert [read_images(s) for s in sorted(out.glob("shard-*.parquet"))] == \
        [read_images(s) for s in sorted(clean.glob("shard-*.parquet"))]
    assert len(list((out / IMAGES_DIR).glob("images-*.parquet"))) == len(shard_ids(out))
