"""Shared pytest fixtures."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def fixtures_root():
    """Root of the built offline fixtures (built once per cache, reused afterwards)."""
    from pipeline.fixtures import ensure_fixtures

    return ensure_fixtures()
