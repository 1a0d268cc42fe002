"""Job-level runs that start as soon as collection ends and run one after another on the session's Ray head,
in a background thread, while the in-process tests run; the tests that read them are ordered last.

On 2 cores the in-process tests (tiny models, mostly one busy thread) and a job (actors starting up,
then a short pipelined run) each leave much of the machine idle, so overlapping them shortens the
session without running anything less.

A test module declares its run with ``@session_run``: a function ``(head, out) -> CompletedProcess`` that
runs the job against ``head`` (a ``raytools.RayHead``) writing under ``out`` (a fresh directory). Its
tests get ``(out, completed process)`` from ``session_runs.result(function)`` (the ``session_runs``
fixture). ``conftest.py`` starts the runs of the modules that have selected tests, and stops everything
(jobs still running, the head) when the session ends.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from raytools import RayHead, kill_started, short_tmpdir, start_head

Run = Callable[[RayHead, Path], subprocess.CompletedProcess]
DECLARED: list[Run] = []


def session_run(run: Run) -> Run:
    """Declare ``run`` as a job of its test module, started in the background when collection ends."""
    DECLARED.append(run)
    return run


class SessionRuns:
    """The session's Ray head and the declared runs of the selected modules, started in declaration order
    on one background thread (the head first); ``head()`` and ``result()`` wait for theirs."""

    def __init__(self, runs: list[Run]):
        self.tmp = Path(tempfile.mkdtemp(prefix="icctp-runs-"))
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="session-runs")
        self._head: Future[RayHead] = self._pool.submit(start_head, short_tmpdir())
        self._runs: dict[Run, Future] = {run: self._pool.submit(self._start, run) for run in runs}

    def _start(self, run: Run) -> tuple[Path, subprocess.CompletedProcess]:
        out = self.tmp / f"{run.__module__}.{run.__name__}"
        return out, run(self._head.result(), out)

    def head(self) -> RayHead:
        return self._head.result()

    def result(self, run: Run) -> tuple[Path, subprocess.CompletedProcess]:
        """``(out, completed process)`` of ``run``, once it has finished."""
        return self._runs[run].result()

    def wait_all(self) -> None:
        """Block until every run has finished (a test about to use the head alone)."""
        for future in self._runs.values():
            future.exception()

    def stop(self) -> None:
        """Cancel the runs not started, kill the jobs still running and the head, remove the outputs."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        kill_started(str(self.tmp))  # a running job's driver (its command line names its output under tmp)
        try:
            head = self._head.result(timeout=130)
        except Exception:  # the head never came up: nothing of it to stop
            head = None
        self._pool.shutdown(wait=True)
        if head is not None:
            head.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)
