"""A lost node is survived or reported, never a hang: a local cluster of a head and two worker nodes,
each worker with one ``fake_gpu`` (the model actors need one each); one worker is killed once the first
prediction file is written. The job either completes with every input row exactly once or exits with
status 3 within the stall time plus a margin, naming the lost node; a rerun with the same --output on
the remaining nodes then completes with no row lost or duplicated."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
from raycluster import LocalCluster
from raytools import REPO, eval_all_cmd, kill_started, short_tmpdir

pytestmark = [pytest.mark.slow, pytest.mark.bench]
MANIFEST = REPO / "tests" / "data" / "node_loss.yaml"
STALL_S = 30  # compute.stall_timeout_s of that manifest
MARGIN_S = 600  # the rest of the run, scoring and the report, on a loaded machine


def job(cluster: LocalCluster, out: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(eval_all_cmd("--manifest", str(MANIFEST), "--output", str(out), "--address",
                                         cluster.address),
                            env=cluster.env, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_first_part(out: Path, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any((out / "predictions").rglob("part-*.parquet")):
            return
        time.sleep(0.2)
    raise AssertionError(f"no prediction file within {timeout:.0f} s (job status {proc.poll()})")


def check_every_row_once(out: Path) -> int:
    inputs = pl.concat([pl.read_parquet(f, columns=["benchmark", "sample_id"])
                        for f in sorted((out / "inputs").rglob("shard-*.parquet"))])
    preds = pl.concat([pl.read_parquet(f, columns=["benchmark", "sample_id"])
                       for f in sorted((out / "predictions").rglob("part-*.parquet"))])
    assert preds.height == inputs.height  # one variant
    assert preds.sort(["benchmark", "sample_id"]).equals(inputs.sort(["benchmark", "sample_id"]))
    return preds.height


@pytest.mark.timeout(1800)  # three Ray nodes and two jobs: minutes on a shared 2-core machine
def test_a_lost_worker_node_is_survived_or_reported_and_a_rerun_completes(fixtures_root, tmp_path):
    tmp = short_tmpdir()
    procs: list[subprocess.Popen] = []
    cluster = None
    try:
        cluster = LocalCluster(tmp, head_cpus=4)
        cluster.add_worker(2, {"fake_gpu": 1})
        victim = cluster.add_worker(2, {"fake_gpu": 1})
        out = tmp_path / "run"
        first = job(cluster, out, tmp_path / "first.log")
        procs.append(first)
        wait_for_first_part(out, first, timeout=600)
        cluster.kill_worker(victim)
        killed = time.monotonic()
        try:
            status = first.wait(timeout=STALL_S + MARGIN_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the job neither finished nor stopped {STALL_S + MARGIN_S} s after losing a node")
        reaction_s = time.monotonic() - killed
        log = (tmp_path / "first.log").read_text()
        if status == 0:
            outcome = "completed"
            check_every_row_once(out)
        else:
            outcome = "stopped"
            assert status == 3, log[-4000:]
            assert "error: lost node" in log and "fake_gpu=1" in log and "rerun with the same --output" in log
        second = job(cluster, out, tmp_path / "second.log")
        procs.append(second)
        assert second.wait(timeout=600) == 0, (tmp_path / "second.log").read_text()[-4000:]
        rows = check_every_row_once(out)
        print(f"node loss: first attempt {outcome} {reaction_s:.0f} s after the kill; rerun wrote all {rows} rows")
    finally:
        for proc in procs:
            kill_started(tmp, group=proc.pid)
        if cluster is not None:
            cluster.stop()
