"""`ray job submit --working-dir . -- python jobs/eval_all.py ...` against a local head we start and stop by PID."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from raytools import REPO, kill_started, ray_env, short_tmpdir, start_head

pytestmark = pytest.mark.slow


def test_job_submit_runs_eval_all_on_a_cluster(tmp_path, fixtures_root):
    tmp = short_tmpdir()
    head, url = start_head(tmp)
    out = tmp_path / "run"
    try:
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", url, "--working-dir", str(REPO),
             "--", "python", "jobs/eval_all.py", "--budget", "64", "--limit", "3", "--benchmarks", "vqav2,pope",
             "--methods", "full,icctp", "--output", str(out)],
            env=ray_env(tmp), cwd=REPO, capture_output=True, text=True, timeout=600)
    finally:
        kill_started(tmp, group=head.pid)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "succeeded" in proc.stdout and "report:" in proc.stdout
    preds = pl.concat([pl.read_parquet(f) for f in (out / "predictions").rglob("*.parquet")])
    assert preds.group_by("benchmark", "method", "budget").len()["len"].to_list() == [3, 3, 3, 3]
