"""jobs/nightly.py: runs the sweep as a subprocess, compares with latest-good, moves the pointer
only when green, exits non-zero on regression or failed evaluation."""
from __future__ import annotations

import datetime as dt
import importlib.util
import json
from pathlib import Path

import pytest

from pipeline.fixtures.synthetic_run import write_synthetic_run
from pipeline.nightly import NIGHTLY_BUDGETS, POINTER, latest_good, run_nightly, tolerances_for

ROOT = Path(__file__).resolve().parents[1]
SYNTHETIC = dict(benchmarks=("vqav2",), methods=("full", "icctp"), n_samples=3)

FAKE_EVAL = """
import argparse, json, os, shutil, sys
if os.environ.get("FAKE_EVAL_FAIL"):
    sys.exit(3)
p = argparse.ArgumentParser()
p.add_argument("--manifest"); p.add_argument("--budgets"); p.add_argument("--output")
args, extra = p.parse_known_args()
shutil.copytree(os.path.join(TEMPLATES, args.budgets), args.output, dirs_exist_ok=True)
with open(os.path.join(args.output, "argv.json"), "w") as f:
    json.dump(sys.argv[1:], f)
if os.environ.get("FAKE_EVAL_DOCTOR"):
    import polars as pl
    path = os.path.join(args.output, "metrics.parquet")
    pl.read_parquet(path).with_columns(
        pl.when(pl.col("budget") == 32).then(pl.col("value") - 0.05).otherwise(pl.col("value")).alias("value")
    ).write_parquet(path)
"""


@pytest.fixture
def fake_eval(tmp_path) -> Path:
    """A stand-in for jobs/eval_all.py: copies the synthetic run written here for its ``--budgets`` (so the
    subprocess imports only what copying needs), records its argv, and can fail or regress on request."""
    templates = tmp_path / "templates"
    for budgets in (NIGHTLY_BUDGETS, (576, 32)):
        write_synthetic_run(templates / ",".join(map(str, budgets)), **SYNTHETIC, budgets=list(budgets))
    script = tmp_path / "fake_eval_all.py"
    script.write_text(f"TEMPLATES = {str(templates)!r}\n" + FAKE_EVAL)
    return script


def night(day: int) -> dt.datetime:
    return dt.datetime(2026, 1, day, 3, 0, tzinfo=dt.UTC)


@pytest.mark.slow
def test_pointer_moves_only_when_green(tmp_path, fake_eval, monkeypatch):
    runs, manifest = tmp_path / "nightly", ROOT / "manifests" / "nightly.yaml"
    first = run_nightly(manifest, runs, eval_script=fake_eval, now=night(1), with_plots=False)
    assert (first.exit_code, first.baseline) == (0, None)
    assert latest_good(runs) == first.run_dir.resolve()
    assert json.loads((first.run_dir / "argv.json").read_text())[3] == ",".join(map(str, NIGHTLY_BUDGETS))

    second = run_nightly(manifest, runs, eval_script=fake_eval, now=night(2), with_plots=False)
    assert second.exit_code == 0 and second.verdict.startswith("OK: ")
    assert second.baseline == first.run_dir.resolve()
    assert latest_good(runs) == second.run_dir.resolve()
    assert (second.run_dir / "compare" / "compare.md").is_file()

    monkeypatch.setenv("FAKE_EVAL_DOCTOR", "1")
    third = run_nightly(manifest, runs, eval_script=fake_eval, now=night(3), with_plots=False)
    assert third.exit_code == 1
    assert "vqav2/icctp@32 accuracy fell" in third.verdict
    assert latest_good(runs) == second.run_dir.resolve()
    assert (runs / POINTER).is_symlink()

    monkeypatch.delenv("FAKE_EVAL_DOCTOR")
    monkeypatch.setenv("FAKE_EVAL_FAIL", "1")
    fourth = run_nightly(manifest, runs, eval_script=fake_eval, now=night(4), with_plots=False)
    assert fourth.exit_code == 2 and "exited with 3" in fourth.verdict
    assert latest_good(runs) == second.run_dir.resolve()


@pytest.mark.slow
def test_cli_passes_eval_args_and_explicit_baseline(tmp_path, fake_eval, capsys):
    spec = importlib.util.spec_from_file_location("job_nightly", ROOT / "jobs" / "nightly.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    runs = tmp_path / "nightly"
    base = write_synthetic_run(tmp_path / "base", **SYNTHETIC, budgets=(576, 32))
    code = job.main(["--manifest", str(ROOT / "manifests" / "nightly.yaml"), "--runs", str(runs),
                     "--baseline", str(base), "--budgets", "576,32", "--eval-script", str(fake_eval),
                     "--no-plots", "--", "--limit", "2"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith("OK: ")
    run_dir = latest_good(runs)
    argv = json.loads((run_dir / "argv.json").read_text())
    assert argv[argv.index("--budgets") + 1] == "576,32" and argv[-2:] == ["--limit", "2"]


def test_tolerances_come_from_the_manifest_section(tmp_path):
    assert tolerances_for(ROOT / "manifests" / "nightly.yaml", None).default == 1.0
    plain = tmp_path / "m.yaml"
    plain.write_text("name: x\n")
    assert tolerances_for(plain, None).default == 0.5
