"""Job-level runs that start when collection ends and run one after another on the session's Ray head, in a
background thread, while the in-process tests run; the tests that read them are ordered last.

On 2 cores the in-process tests (tiny models, mostly one busy thread) and a job (actors starting up,
then a short pipelined run) each leave much of the machine idle, so overlapping them shortens the
session without running anything less.

A test module declares its run with ``@session_run``: a function ``(head, out) -> value`` that runs a job
against ``head`` (a ``raytools.RayHead``) writing under ``out`` (a fresh directory) and returns what its
tests check (the job's ``CompletedProcess``, or facts gathered along the way). Its tests get ``(out,
value)`` from ``session_runs.result(function)`` (the ``session_runs`` fixture); an exception raised by
the run is raised there. ``conftest.py`` starts the runs of the modules that have selected tests (in a
session of only long-lane readers, at the first reader, since that lane's other tests start Ray clusters of
their own), and stops everything (jobs still running, the head) when the session ends.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from raytools import RayHead, kill_started, short_tmpdir, start_head

Run = Callable[[RayHead, Path], Any]
DECLARED: list[Run] = []


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
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="session-runs")
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

    def _stop_head(self) -> None:
        self._head.result().stop()

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
