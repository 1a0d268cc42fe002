"""Preparation overlaps model work: the first wave is handed over while later benchmarks are still being
prepared; preparations finishing close together share a wave; finished ones come in order; ready ones form
the first wave without waiting; errors surface after the waves before them."""
from __future__ import annotations

import threading
import time

import pytest

from pipeline.waves import waves


def test_the_first_benchmark_runs_while_the_others_are_prepared():
    release, order = threading.Event(), []

    def job(name, wait=None):
        def run():
            if wait is not None:
                assert wait.wait(10), "the model work never started"
            order.append(f"prepared {name}")
            return {"name": name}
        return run

    records: dict = {}
    jobs = {"a": job("a"), "b": job("b", release), "c": job("c")}
    got = []
    for wave in waves(jobs, records, settle_s=0.2):
        order.append(f"model {wave}")
        got.append(wave)
        release.set()  # b's preparation can only finish once the model work on a has started
    assert got[0] == ["a"] and [n for w in got for n in w] == ["a", "b", "c"]
    assert order.index("model ['a']") < order.index("prepared b")
    assert records == {n: {"name": n} for n in "abc"}


def test_preparations_finishing_within_the_settle_time_share_a_wave():
    release = threading.Event()

    def blocked():
        assert release.wait(10), "the first wave never came"
        return {}

    jobs = {"a": dict, "b": lambda: time.sleep(0.1) or {}, "c": blocked, "d": dict}
    got = []
    for wave in waves(jobs, {}, settle_s=1.0):
        got.append(wave)
        release.set()
    assert got == [["a", "b"], ["c", "d"]]


def test_ready_benchmarks_form_the_first_wave():
    records: dict = {}
    jobs = {n: (lambda n=n: {"name": n}) for n in "abc"}
    got = list(waves(jobs, records, ready=lambda name: name in "ab"))
    assert got[0] == ["a", "b"] and [n for w in got for n in w] == ["a", "b", "c"]


def test_a_failed_preparation_is_raised_after_the_waves_before_it():
    def fail():
        raise ConnectionError("hub unreachable")

    got = []
    with pytest.raises(ConnectionError, match="hub unreachable"):
        for wave in waves({"a": lambda: {}, "b": fail, "c": lambda: {}}, {}, settle_s=0.2):
            got.append(wave)
    assert got == [["a"]]
