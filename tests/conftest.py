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
- ``session_runs``: the head is started, and the jobs test modules declare with ``@session_run`` are
  run on it, in the background from the end of collection (``session_runs.py``); tests on the head run last,
  and a test that asks for ``ray_head`` itself gets it once those runs have finished.

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


RUNS: list = []  # the session's SessionRuns, once a selected test needs the Ray head


def ray_order(item) -> int:
    """0: not on the Ray head; 1: reads ``session_runs``; 2: uses the head itself (``ray_head``)."""
    names = set(getattr(item, "fixturenames", ()))
    return 2 if "ray_head" in names else 1 if "session_runs" in names else 0


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(config, items):
    """Tests on the Ray head go last, those that use it directly after those that read its runs; the
    head and its background runs (``session_runs``) start now."""
    on_ray = [item for item in items if ray_order(item)]
    if not on_ray or config.option.collectonly:
        return
    items.sort(key=ray_order)  # stable: collection order within each group
    from session_runs import DECLARED, SessionRuns

    modules = {item.module.__name__ for item in on_ray}
    RUNS.append(SessionRuns([run for run in DECLARED if run.__module__ in modules]))


def pytest_sessionfinish(session, exitstatus):
    while RUNS:
        import ray

        ray.shutdown()  # a test may have connected this process to the head
        RUNS.pop().stop()


@pytest.fixture(scope="session")
def session_runs():
    """The session's ``SessionRuns``: its Ray head and the runs its test modules declared."""
    return RUNS[0]


@pytest.fixture(scope="session")
def ray_head(session_runs):
    """One local Ray head (4 logical CPUs) for the session, started when collection ends, stopped at its end;
    the background runs have all finished when a test gets it."""
    session_runs.wait_all()
    return session_runs.head()


@pytest.fixture(scope="session")
def ray_address(ray_head) -> str:
    """GCS address (``127.0.0.1:<port>``) of the session's Ray head."""
    return ray_head.address
