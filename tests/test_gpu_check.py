"""scripts/gpu_check.py: the --tiny CPU run prints its table; --tiny --pipeline runs the real job."""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))

import gpu_check  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_table(fixtures_root) -> list[list[str]]:
    """Cells of the Markdown table rows printed by ``gpu_check.py --tiny`` (header and rule dropped)."""
    threads, out = torch.get_num_threads(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            gpu_check.main(["--tiny"])
    finally:
        torch.set_num_threads(threads)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_tiny_table_has_a_row_per_method_and_budget(tiny_table):
    pairs = [(row[0], int(row[1])) for row in tiny_table]
    assert pairs == [(m, b) for m in gpu_check.METHODS for b in gpu_check.BUDGETS]


def test_tiny_table_kept_counts_are_exact(tiny_table):
    for method, budget, kept, *_ in tiny_table:
        expected = 576 if method == "full" else min(int(budget), 576)
        assert int(kept) == expected, (method, budget, kept)


def test_tiny_table_timings_are_numbers(tiny_table):
    for row in tiny_table:
        vision, select, prefill, generate = (float(cell) for cell in row[3:7])
        assert vision > 0 and select >= 0 and prefill > 0 and generate > 0, row
        assert row[7] == "n/a (cpu)"
        assert 0 <= float(row[8].rstrip("%")) <= 100, row


@pytest.mark.slow
@pytest.mark.bench
def test_tiny_pipeline_runs_every_question_at_both_budgets_with_no_batch_effect(fixtures_root, tmp_path):
    """The job runs each synthetic question once per budget, without error; in fp32 greedy answers do not
    depend on the batch; the actor's time split covers its whole time."""
    import json
    import subprocess

    from raytools import kill_started, ray_env, short_tmpdir

    record, tmp = tmp_path / "result.json", short_tmpdir()
    try:
        proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--pipeline", "12", "--compare-samples", "8",
                               "--record", str(record)], env=ray_env(tmp), capture_output=True, text=True, timeout=900)
    finally:
        kill_started(tmp)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(record.read_text())
    assert [(r["method"], r["budget"], r["rows"], r["errors"]) for r in result["runs"]] == \
        [(m, b, 12, 0) for m, b in gpu_check.PIPELINE_VARIANTS]
    for run in result["runs"]:
        assert set(run["split"]) == {"vision", "select", "prefill", "decode", "other"}
        assert sum(run["split"].values()) == pytest.approx(100.0)
        assert run["peak_gib"] is None
    assert result["differ"] == {"576": 0, "64": 0}
    assert "projected 214,354 q" in proc.stdout
