"""Nightly regression: run the budget sweep, compare with the last good run, move the
``latest-good`` pointer only when green.

Layout under the runs root (default ``runs/nightly``)::

    nightly-YYYYmmdd-HHMMSS/     one run directory per night (with compare/ and nightly.json inside)
    latest-good -> nightly-...   symlink to the last run that passed, replaced atomically
    index.html                   the trend page (pipeline.report.trend), rebuilt after every night

Exit codes: 0 green (pointer moved), 1 regression (pointer kept), 2 the evaluation failed.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.report.compare import verdict, write_comparison
from pipeline.report.tolerances import Tolerances, load_tolerances
from pipeline.report.trend import RECORD, write_trend_page

ROOT = Path(__file__).resolve().parents[1]
EVAL_ALL = ROOT / "jobs" / "eval_all.py"
DEFAULT_TOLERANCES = ROOT / "manifests" / "tolerances.yaml"
NIGHTLY_BUDGETS = (576, 192, 128, 64, 32)
POINTER = "latest-good"


@dataclass
class NightlyResult:
    exit_code: int
    run_dir: Path
    baseline: Path | None
    verdict: str


def latest_good(runs_root: Path) -> Path | None:
    """The run the ``latest-good`` pointer names, or None when there is none yet."""
    pointer = Path(runs_root) / POINTER
    if not pointer.is_symlink():
        return None
    target = pointer.resolve()
    if not target.is_dir():
        raise FileNotFoundError(f"{pointer} points to {target}, which does not exist")
    return target


def set_latest_good(runs_root: Path, run_dir: Path) -> None:
    """Point ``runs_root/latest-good`` at ``run_dir`` (relative link, atomic replace)."""
    runs_root = Path(runs_root)
    tmp = runs_root / f".{POINTER}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.relpath(Path(run_dir).resolve(), runs_root.resolve()), tmp)
    os.replace(tmp, runs_root / POINTER)


def tolerances_for(manifest: Path, path: Path | None) -> Tolerances:
    """``path`` when given; else the manifest's ``tolerances:`` section; else the defaults file."""
    if path is not None:
        return load_tolerances(path)
    data = yaml.safe_load(Path(manifest).read_text()) or {}
    if isinstance(data, dict) and "tolerances" in data:
        return load_tolerances(manifest)
    return load_tolerances(DEFAULT_TOLERANCES)


def eval_command(manifest: Path, budgets, run_dir: Path, extra_args=(), eval_script: Path = EVAL_ALL) -> list[str]:
    return [sys.executable, str(eval_script), "--manifest", str(manifest),
            "--budgets", ",".join(str(b) for b in budgets), "--output", str(run_dir), *extra_args]


def run_nightly(manifest: Path, runs_root: Path, *, baseline: Path | None = None,
                budgets=NIGHTLY_BUDGETS, tolerances: Path | None = None, extra_args=(),
                eval_script: Path = EVAL_ALL, now: dt.datetime | None = None,
                with_plots: bool = True) -> NightlyResult:
    """Run the sweep into a new run directory, compare it with ``baseline`` (default: the
    ``latest-good`` run; none on the first night, which is then green) and move the pointer
    when green. ``extra_args`` go to the evaluation script; ``now`` names the run (UTC)."""
    runs_root = Path(runs_root)
    runs_root.mkdir(parents=True, exist_ok=True)
    tol = tolerances_for(manifest, tolerances)
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d-%H%M%S")
    run_dir = runs_root / f"nightly-{stamp}"
    if run_dir.exists():
        raise FileExistsError(f"{run_dir} already exists")
    base = Path(baseline) if baseline is not None else latest_good(runs_root)
    proc = subprocess.run(eval_command(manifest, budgets, run_dir, extra_args, eval_script))
    if proc.returncode != 0:
        result = NightlyResult(2, run_dir, base, f"FAILED: the evaluation exited with {proc.returncode}")
        record_night(runs_root, result, [result.verdict])
        return result
    return finish_night(runs_root, run_dir, base, tol, with_plots=with_plots)


def finish_night(runs_root: Path, run_dir: Path, base: Path | None, tol: Tolerances,
                 with_plots: bool = True, trend: bool = True) -> NightlyResult:
    """After the evaluation of ``run_dir``: compare it with ``base`` (none: the first night, green),
    move the pointer when green, record the verdict and (``trend``) rebuild the trend page."""
    problems = []
    if base is None:
        set_latest_good(runs_root, run_dir)
        result = NightlyResult(0, run_dir, None, "OK: first good run (no baseline to compare with)")
    else:
        comparisons, _ = write_comparison([base, run_dir], tol, run_dir / "compare", with_plots=with_plots)
        problems = [p for c in comparisons for p in c.problems]
        result = NightlyResult(1 if problems else 0, run_dir, base, verdict(comparisons))
        if not problems:
            set_latest_good(runs_root, run_dir)
    record_night(runs_root, result, problems, trend)
    return result


def record_night(runs_root: Path, result: NightlyResult, problems: list[str], trend: bool = True) -> None:
    """Write the night's verdict to ``RUN/nightly.json`` and (``trend``) rebuild ``RUNS/index.html``."""
    Path(result.run_dir).mkdir(parents=True, exist_ok=True)
    record = {"exit_code": result.exit_code, "verdict": result.verdict, "problems": problems,
              "baseline": None if result.baseline is None else Path(result.baseline).name}
    (Path(result.run_dir) / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    if trend:
        write_trend_page(runs_root)
