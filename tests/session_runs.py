"""Job-level runs that start when collection ends and run one after another on the session's Ray head, in a
background thread, while the in-process tests run; the tests that read them are ordered last.

On 2 cores the in-process tests (tiny models, mostly one busy thread) and a job (actors starting up,
then a short pipelined run) each leave much of the machine idle, so overlapping them shortens the
session without running anything less. While the runs last, the CPUs are split (``split_cpus``): the runs
get one half and the in-process tests the other, so that neither slows the other down (with the CPUs
shared, the in-process tests ran at about 0.6 of their speed while a job ran); the tests get every CPU
back once the last run is done.

A test module declares its run with ``@session_run``: a function ``(head, out) -> value`` that runs a job
against ``head`` (a ``raytools.RayHead``) writing under ``out`` (a fresh directory) and returns what its
tests check (the job's ``CompletedProcess``, or facts gathered along the way). Its tests get ``(out,
value)`` from ``session_runs.result(function)`` (the ``session_runs`` fixture); an exception raised by
the run is raised there. ``conftest.py`` starts the runs of the modules that have selected tests (in a
session of only long-lane readers, at the first reader, since that lane's other tests start Ray clusters of
their own), and stops everything (jobs still running, the head) when the session ends.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from raytools import RayHead, kill_started, short_tmpdir, start_head

Run = Callable[[RayHead, Path], Any]
DECLARED: list[Run] = []


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(CPUs of the in-process tests, CPUs of the background runs): the first and the second half of the CPUs
    this process may use; None with a single CPU."""
    cpus = sorted(os.sched_getaffinity(0))
    half = len(cpus) // 2
    return (set(cpus[:half]), set(cpus[half:])) if half else None


def session_run(run: Run) -> Run:
    """Declare ``run`` as a job of its test module, started in the background when collection ends."""
    DECLARED.append(run)
    return run


class SessionRuns:
    """The session's Ray head and the declared runs of the selected modules, run in declaration order on one
    background thread (the head first, stopped after the last run), from construction (``start``) or from
    the first ``result()``; ``result()`` waits for its run."""

    def __init__(self, runs: list[Run], start: bool = True):
        self.tmp = Path(tempfile.mkdtemp(prefix="icctp-runs-"))
        self._cpus = os.sched_getaffinity(0)
        self._split = split_cpus() if start else None
        self._main = threading.get_native_id()
        if self._split:  # Linux: a thread's own affinity, inherited by the threads and processes it starts
            os.sched_setaffinity(0, self._split[0])
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="session-runs", initializer=self._background_cpus)
        self._declared = runs
        self._head: Future[RayHead] | None = None
        self._runs: dict[Run, Future] = {}
        if start:
            self._start_all()

    def _start_all(self) -> None:
        self._head = self._pool.submit(start_head, short_tmpdir())
        self._runs = {run: self._pool.submit(self._start, run) for run in self._declared}
        self._pool.submit(self._stop_head)  # once the last run is done: an idle head still costs CPU

    def _start(self, run: Run) -> tuple[Path, Any]:
        out = self.tmp / f"{run.__module__}.{run.__name__}"
        return out, run(self._head.result(), out)

    @property
    def foreground_cpus(self) -> set[int] | None:
        """The CPUs the in-process tests have while the runs last; None when they are not split."""
        return self._split[0] if self._split else None

    def _background_cpus(self) -> None:
        if self._split:
            os.sched_setaffinity(0, self._split[1])

    def _stop_head(self) -> None:
        """Stop the head and give the in-process tests every CPU back."""
        self._head.result().stop()
        if self._split:
            os.sched_setaffinity(self._main, self._cpus)

    def result(self, run: Run) -> tuple[Path, Any]:
        """``(out, value)`` of ``run``, once it has finished."""
        if self._head is None:
            self._start_all()
        return self._runs[run].result()

    def stop(self) -> None:
        """Cancel the runs not started, kill the jobs still running and the head (if still up), remove the outputs."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        kill_started(str(self.tmp))  # a running job's driver (its command line names its output under tmp)
        head = None
        if self._head is not None:
            try:
                head = self._head.result(timeout=130)
            except Exception:  # the head never came up: nothing of it to stop
                pass
        self._pool.shutdown(wait=True)
        if head is not None:
            head.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
