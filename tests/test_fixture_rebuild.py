"""Every cached fixture (tiny models, benchmark tables, toy-world tables) rebuilds byte for byte."""
from __future__ import annotations

import hashlib

import pytest

from pipeline.fixtures import build_fixtures
from pipeline.fixtures import datasets as fx

pytestmark = [pytest.mark.slow, pytest.mark.rebuild]


def digests(root) -> dict[str, str]:
    """``{path relative to root: sha256}`` of every file under ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_rebuild_is_byte_identical(fixtures_root, tmp_path):
    build_fixtures(tmp_path / "root")
    cached, rebuilt = digests(fixtures_root), digests(tmp_path / "root")
    cached.pop("COMPLETE")
    assert set(cached) >= {"models/llava15/model.safetensors", "models/llava_next/model.safetensors",
                           "models/llava15/tokenizer.json", "data/toyworld_vqav2.parquet", "data/toyworld_pope.parquet"}
    assert {f"data/{name}.parquet" for name in fx.NAMES} <= set(cached)
    assert rebuilt == cached, sorted(k for k in cached.keys() | rebuilt.keys() if cached.get(k) != rebuilt.get(k))
