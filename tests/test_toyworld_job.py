"""``scripts/eval_toyworld.py`` on a few fresh questions, through the real job on the session's Ray head (a
``session_run``; long lane, with the other scripts' own Ray runs): the nouns stage's phrases reach the
model actor as ``noun_spans`` and become its centers (also checked on the e2e run's toy-world rows), the
written predictions show ICCTP keeping more of the asked object than CLS at 16 tokens, and the script
prints its table."""
from __future__ import annotations

import re
import subprocess
import sys

import polars as pl
import pytest
from raytools import REPO, ray_env
from session_runs import session_run
from toyworld_phrases import expected_phrases

from pipeline.report.evidence import coverage_table
from pipeline.report.runs import scan_predictions

pytestmark = [pytest.mark.slow, pytest.mark.bench]  # the script's own Ray run: the long lane
QUESTIONS = 16


@session_run
def evaluated(head, out):
    """``scripts/eval_toyworld.py`` against the session's head."""
    return subprocess.run([sys.executable, str(REPO / "scripts" / "eval_toyworld.py"), "--seed", "12",
                           "--questions", str(QUESTIONS), "--output", str(out), "--methods", "full", "icctp", "cls",
                           "--address", head.address],
                          env=ray_env(head.tmp), cwd=REPO, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def job(session_runs):
    """(output dir, stdout) of the run."""
    out, proc = session_runs.result(evaluated)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out, proc.stdout


def test_every_row_gets_its_phrases_as_noun_centers_through_ray(job):
    out, _ = job
    rows = scan_predictions(out / "run").collect()
    icctp = rows.filter(pl.col("method") == "icctp")
    assert icctp.height == 4 * QUESTIONS * 3 and icctp["error"].null_count() == icctp.height  # and the ablated copies
    assert icctp["center_source"].to_list() == ["nouns"] * icctp.height
    for question, phrases in icctp.select("question", "noun_phrases").iter_rows():
        assert phrases == expected_phrases(question), question


def test_icctp_keeps_more_of_the_asked_object_than_cls_in_the_written_predictions(job):
    out, _ = job
    table = coverage_table(scan_predictions(out / "run").filter(pl.col("benchmark").is_in(["vqav2", "pope"])))
    at16 = dict(table.filter(pl.col("budget") == 16).select("method", "kept_fraction").iter_rows())
    assert at16["icctp"] > at16["cls"] + 0.1, at16


def test_the_script_prints_the_table_with_the_ablation_row(job):
    _, stdout = job
    assert "| method | budget | VQAv2 acc [95%] | POPE acc [95%] | POPE F1 | kept | ≥1 |" in stdout
    assert sum(line.startswith("| ICCTP |") for line in stdout.splitlines()) == 3
    assert "| full, asked object removed | 576 |" in stdout
    assert re.search(r"^\| 16 \| [+-]\d+\.\d \[", stdout, re.M)
