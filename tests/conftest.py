"""Shared pytest fixtures, each built once per test session.

- ``fixtures_root``: root of the built offline fixtures (tiny models, benchmark-shaped Parquet).
- ``llava15_vlm``, ``llava_next_vlm``, ``toyworld_vlm``: the tiny random LLaVA-1.5, the tiny random
  LLaVA-NeXT and the committed toy-world LLaVA through ``load_vlm`` (fp32, CPU, SDPA). Shared by every
  test that needs the model: use them as they are (monkeypatch module functions, not the model, and
  leave no hook or context behind).
  A ``VLMStage`` around one of them (or a stand-in): ``VLMStage.from_vlm(vlm, variants, run_id, max_new_tokens[, max_batch_tokens])``.
- ``session_runs``: one local Ray head for the session (``raytools.RayHead``: its own temp dir under /tmp
  and free ports) and the job-level runs test modules declare with ``@session_run`` (``eval_all --address
  <head.address>``, ``ray job submit --address <head.dashboard>``), started when collection ends and run
  one after another in the background while the other tests run (``session_runs.py``; in a long-lane
  session, when the first test reads one), on half of the CPUs until they are done; the tests that read them run
  last. Stopped by this session at its end.

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


RUNS: list = []  # the session's SessionRuns, once a selected test reads one of its runs


def on_ray(item) -> bool:
    return "session_runs" in getattr(item, "fixturenames", ())


@pytest.hookimpl(trylast=True)  # after -m and -k have deselected
def pytest_collection_modifyitems(config, items):
    """Tests that read the session's runs go last. The Ray head and the runs of their modules start now,
    in the background, unless every reader is in the long lane (``bench``: its other tests start Ray
    clusters of their own, which a background job would only slow down); then at the first reader."""
    readers = [item for item in items if on_ray(item)]
    if not readers or config.option.collectonly:
        return
    items.sort(key=on_ray)  # stable: collection order otherwise
    from session_runs import DECLARED, SessionRuns

    modules = {item.module.__name__ for item in readers}
    eager = any(item.get_closest_marker("bench") is None for item in readers)
    RUNS.append(SessionRuns([run for run in DECLARED if run.__module__ in modules], start=eager))
    if RUNS[0].foreground_cpus:  # as many torch threads as the in-process tests have CPUs (tiny models gain nothing from more)
        import torch

        torch.set_num_threads(len(RUNS[0].foreground_cpus))


def pytest_sessionfinish(session, exitstatus):
    while RUNS:
        RUNS.pop().stop()


@pytest.fixture(scope="session")
def session_runs():
    """The session's ``SessionRuns``: the runs its test modules declared, on one Ray head."""
    return RUNS[0]
