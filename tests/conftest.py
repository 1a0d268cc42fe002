"""Shared pytest fixtures, each built once per test session.

- ``fixtures_root``: root of the built offline fixtures (tiny models, benchmark-shaped Parquet).
- ``llava15_vlm``, ``llava_next_vlm``, ``toyworld_vlm``: the tiny random LLaVA-1.5, the tiny random
  LLaVA-NeXT and the committed toy-world LLaVA through ``load_vlm`` (fp32, CPU, SDPA). Shared by every
  test that needs the model: use them as they are (monkeypatch module functions, not the model, and
  leave no hook or context behind).
  A ``VLMStage`` around one of them (or a stand-in): ``VLMStage.from_vlm(vlm, variants, run_id, max_new_tokens[, max_batch_tokens])``.
- ``ray_head``, ``ray_address``: one local Ray head for the session (``raytools.RayHead``: its own temp
  dir under /tmp and free ports, stopped by this session at its end). Job-level tests run on it:
  ``eval_all --address <ray_address>``, ``ray job submit --address <ray_head.dashboard>``.

Lanes: ``-m "not slow"`` is the fast lane; the default run (README's test command) deselects the
``bench`` and ``rebuild`` lanes (``addopts`` in pyproject.toml), which ``.ci/run`` runs afterwards.
"""
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


def _load(kind: str):
    from pipeline.fixtures import tiny_model_path
    from pipeline.model import load_vlm

    return load_vlm(tiny_model_path(kind))


@pytest.fixture(scope="session")
def llava15_vlm(fixtures_root):
    """The tiny random LLaVA-1.5 (``fixtures_root/models/llava15``), fp32 on CPU."""
    return _load("llava15")


@pytest.fixture(scope="session")
def llava_next_vlm(fixtures_root):
    """The tiny random LLaVA-NeXT (``fixtures_root/models/llava_next``), fp32 on CPU."""
    return _load("llava_next")


@pytest.fixture(scope="session")
def toyworld_vlm():
    """The committed toy-world LLaVA (``pipeline/fixtures/toyworld_model``), fp32 on CPU."""
    return _load("toyworld")


@pytest.fixture(scope="session")
def ray_head():
    """One local Ray head (4 logical CPUs) for the session, started and stopped by it."""
    from raytools import short_tmpdir, start_head

    head = start_head(short_tmpdir())
    try:
        yield head
    finally:
        import ray

        ray.shutdown()  # a test may have connected this process to the head
        head.stop()


@pytest.fixture(scope="session")
def ray_address(ray_head) -> str:
    """GCS address (``127.0.0.1:<port>``) of the session's Ray head."""
    return ray_head.address
