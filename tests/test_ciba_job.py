"""jobs/attribute.py end to end on the session's Ray head (a ``session_run``, in the background from
the start of the session): one attribution row per question and space (the
mismatched-image control included), attribution.md with its figures, and resume."""
from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest
from raytools import REPO, ray_env
from session_runs import session_run

from pipeline.attribution.run import space_variants
from pipeline.manifest import load_manifest
from pipeline.stages.resume import plan_resume

pytestmark = pytest.mark.slow
MANIFEST = REPO / "manifests" / "attribute_toyworld.yaml"


@session_run
def attributed(head, out):
    """jobs/attribute.py against the session's head."""
    return subprocess.run([sys.executable, str(REPO / "jobs" / "attribute.py"), "--manifest", str(MANIFEST),
                           "--limit", "3", "--output", str(out), "--address", head.address],
                          env=ray_env(head.tmp), cwd=REPO, capture_output=True, text=True, timeout=900)


def test_attribution_job_writes_one_row_per_question_and_resumes(session_runs):
    out, proc = session_runs.result(attributed)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rows = pl.concat([pl.read_parquet(f, hive_partitioning=False)
                      for f in sorted((out / "attributions").rglob("part-*.parquet"))])
    assert sorted(rows.group_by("benchmark").len().iter_rows()) == \
        [("pope", 3), ("pope-mismatched", 3), ("vqav2", 3), ("vqav2-mismatched", 3)]
    assert rows["error"].null_count() == 12 and set(rows["variant"]) == {"ciba-shared"}
    assert all(len(a) == 576 for a in rows["image_attribution"])
    assert rows.filter(pl.col("control"))["evidence_patches"].null_count() == 6
    matched = rows.filter(~pl.col("control")).sort("benchmark", "sample_id")
    control = rows.filter(pl.col("control")).sort("benchmark", "sample_id")
    assert matched["question"].to_list() == control["question"].to_list()
    assert all(a != b for a, b in zip(matched["image_id"], control["image_id"]))
    report = (out / "attribution.md").read_text()
    assert "## vqav2 · shared space" in report and "noun phrase" in report and "icctp@16" in report
    assert len(list((out / "attribution_img").glob("*.png"))) == 6
    assert "12 attribution rows (12 new)" in proc.stdout

    # resume: nothing pending; a lost part file is pending again, and only its rows
    manifest = load_manifest(MANIFEST)
    shards = sorted((out / "inputs").rglob("shard-*.parquet"))
    assert plan_resume(shards, out / "attributions", space_variants(manifest)).shards == []
    lost = sorted((out / "attributions" / "benchmark=pope").rglob("part-*.parquet"))[0]
    n_lost = pl.read_parquet(lost).height
    lost.unlink()
    plan = plan_resume(shards, out / "attributions", space_variants(manifest))
    assert plan.rows_todo == n_lost and all("benchmark=pope" in s for s in plan.shards)
