"""jobs/compare.py: verdict line, exit codes, causes named; tolerance loading."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from test_plots import assert_png

from pipeline.fixtures.synthetic_run import write_synthetic_run
from pipeline.report.compare import compare_metrics
from pipeline.report.tolerances import Tolerances, load_tolerances, run_tolerances

ROOT = Path(__file__).resolve().parents[1]


def load_job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare_job = load_job("compare")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("runs") / "base", benchmarks=("vqav2", "mme", "mmvet"),
                               methods=("full", "icctp"), budgets=(576, 64), n_samples=4)


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def edit_metrics(run: Path, expr) -> None:
    path = run / "metrics.parquet"
    pl.read_parquet(path).with_columns(expr).write_parquet(path)


def drop_prediction(run: Path, benchmark: str, method: str, budget: int, sample_id: str) -> None:
    path = run / "predictions" / f"benchmark={benchmark}" / f"variant={method}" / f"budget={budget}" / "part-0.parquet"
    pl.read_parquet(path).filter(pl.col("sample_id") != sample_id).write_parquet(path)
    where = (pl.col("benchmark") == benchmark) & (pl.col("variant") == method) & (pl.col("budget") == budget)
    edit_metrics(run, pl.when(where).then(pl.col("n") - 1).otherwise(pl.col("n")).alias("n"))


def at(benchmark, method, budget, metric):
    return ((pl.col("benchmark") == benchmark) & (pl.col("variant") == method) & (pl.col("budget") == budget)
            & (pl.col("metric") == metric))


def test_identical_runs_exit_0(base_run, tmp_path, capsys):
    cand = copy_run(base_run, tmp_path / "cand")
    assert compare_job.main([str(base_run), str(cand), "--output", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("OK: ")
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert "**OK: " in md
    for name in ("accuracy_vs_budget", "retention_vs_reduction", "latency_vs_budget"):
        assert f"({name}.png)" in md
        assert_png(tmp_path / "cmp" / f"{name}.png")


def test_doctored_run_exits_1_and_names_causes(base_run, tmp_path, capsys):
    cand = copy_run(base_run, tmp_path / "cand")
    edit_metrics(cand, pl.when(at("vqav2", "icctp", 64, "accuracy")).then(pl.col("value") - 0.02)
                 .otherwise(pl.col("value")).alias("value"))
    drop_prediction(cand, "mme", "full", 576, "mme-2")
    assert compare_job.main([str(base_run), str(cand), "--no-plots"]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("REGRESSION: 3 problem(s): ")
    assert "vqav2/icctp@64 accuracy fell" in line and "(-2.00, tolerance 0.5)" in line
    assert "mme/full@576 lost 1 row(s) (4 -> 3)" in line
    assert "mme/full@576 lost sample id(s) mme-2" in line
    assert "REGRESSION" in (cand / "compare" / "compare.md").read_text()


def test_fall_within_tolerance_exits_0(base_run, tmp_path):
    cand = copy_run(base_run, tmp_path / "cand")
    edit_metrics(cand, pl.when(at("mme", "icctp", 64, "perception")).then(pl.col("value") - 9.0)
                 .otherwise(pl.col("value")).alias("value"))
    assert compare_job.main([str(base_run), str(cand), "--output", str(tmp_path / "cmp"), "--no-plots"]) == 0


def test_gained_errors_and_missing_metric_exit_1(base_run, tmp_path, capsys):
    cand = copy_run(base_run, tmp_path / "cand")
    edit_metrics(cand, pl.when(pl.col("benchmark") == "mmvet").then(pl.col("n_errors") + 2)
                 .otherwise(pl.col("n_errors")).alias("n_errors"))
    path = cand / "metrics.parquet"
    pl.read_parquet(path).filter(~at("mme", "icctp", 64, "cognition")).write_parquet(path)
    assert compare_job.main([str(base_run), str(cand), "--output", str(tmp_path / "cmp"), "--no-plots"]) == 1
    line = capsys.readouterr().out.splitlines()[0]
    assert "mmvet/icctp@64 gained 2 error row(s) (1 -> 3)" in line
    assert "mme/icctp@64 cognition missing" in line


def test_budgets_inside_one_run(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / "sweep", benchmarks=("vqav2", "mme"), methods=("full", "icctp"),
                              budgets=(576, 128, 64), n_samples=3)
    code = compare_job.main([str(run), "--budgets", "128,64", "--output", str(tmp_path / "cmp"), "--no-plots"])
    line = capsys.readouterr().out.splitlines()[0]
    # synthetic icctp: 0.78 x (1 - 0.12 x (1 - b/576)); 128 -> 64 loses 1.04 points on vqav2,
    # 20.1 MME points on perception (tolerance 10) and 5.0 on cognition (within tolerance)
    assert code == 1
    assert line.startswith("REGRESSION: 2 problem(s): ")
    assert "vqav2/icctp@64 accuracy fell 70.72 -> 69.68 (-1.04, tolerance 0.5)" in line
    assert "mme/icctp@64 perception fell" in line and "cognition" not in line
    assert compare_job.main([str(run), "--budgets", "576,100", "--no-plots"]) == 2


def test_a_vanished_unscored_variant_counts_as_lost_rows(base_run, tmp_path, capsys):
    cand = copy_run(base_run, tmp_path / "cand")
    path = cand / "metrics.parquet"
    pl.read_parquet(path).filter(~((pl.col("benchmark") == "mmvet") & (pl.col("variant") == "icctp"))).write_parquet(path)
    assert compare_job.main([str(base_run), str(cand), "--no-plots", "--output", str(tmp_path / "cmp")]) == 1
    assert "mmvet/icctp@64 lost 4 row(s) (4 -> 0)" in capsys.readouterr().out.splitlines()[0]


def test_budget_against_the_unpruned_reference_compares_every_method_with_full(tmp_path, capsys):
    run = write_synthetic_run(tmp_path / "sweep", benchmarks=("vqav2",), methods=("full", "icctp", "cls"),
                              budgets=(576, 64), n_samples=3)
    code = compare_job.main([str(run), "--budgets", "576,64", "--output", str(tmp_path / "cmp"), "--no-plots"])
    line = capsys.readouterr().out.splitlines()[0]
    assert code == 1 and "missing" not in line
    assert "vqav2/icctp@64 accuracy fell" in line and "vqav2/cls@64 accuracy fell" in line
    assert "full@64" not in line


def test_bad_input_exits_2(tmp_path, capsys):
    assert compare_job.main([str(tmp_path / "nope"), str(tmp_path / "nope2")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_compare_metrics_table():
    cols = ["benchmark", "variant", "method", "budget", "metric", "value", "n", "n_errors"]
    base = pl.DataFrame([("vqav2", "icctp", "icctp", 64, "accuracy", 0.70, 10, 0),
                         ("mme", "icctp", "icctp", 64, "perception", 1200.0, 10, 0)], schema=cols, orient="row")
    cand = pl.DataFrame([("vqav2", "icctp", "icctp", 64, "accuracy", 0.694, 10, 0),
                         ("mme", "icctp", "icctp", 64, "perception", 1180.0, 10, 0),
                         ("gqa", "icctp", "icctp", 64, "accuracy", 0.5, 10, 0)], schema=cols, orient="row")
    table, problems = compare_metrics(base, cand, Tolerances())
    got = {r["benchmark"]: r for r in table.iter_rows(named=True)}
    assert got["vqav2"]["delta"] == pytest.approx(-0.6) and got["vqav2"]["status"] == "regressed"
    assert got["mme"]["delta"] == pytest.approx(-20.0) and got["mme"]["status"] == "regressed"
    assert got["gqa"]["status"] == "new"
    assert len(problems) == 2
    _, problems = compare_metrics(base, cand, Tolerances(default=1.0, metrics={"perception": 25.0}))
    assert problems == []


def test_tolerances_file_and_manifest_section(tmp_path):
    assert load_tolerances(ROOT / "manifests" / "tolerances.yaml") == Tolerances()
    manifest = tmp_path / "m.yaml"
    manifest.write_text("name: x\ntolerances:\n  default: 1.0\n  metrics: {mme/perception: 20}\n")
    tol = load_tolerances(manifest)
    assert tol.for_metric("vqav2", "accuracy") == 1.0
    assert tol.for_metric("mme", "perception") == 20.0
    assert tol.for_metric("mme", "cognition") == 1.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("tolerances:\n  defualt: 1.0\n")
    with pytest.raises(ValueError, match="defualt"):
        load_tolerances(bad)


def test_run_manifest_tolerances_are_the_default(base_run, tmp_path):
    cand = copy_run(base_run, tmp_path / "cand")
    edit_metrics(cand, pl.when(at("vqav2", "icctp", 64, "accuracy")).then(pl.col("value") - 0.008)
                 .otherwise(pl.col("value")).alias("value"))
    args = [str(base_run), str(cand), "--no-plots"]
    assert compare_job.main(args) == 1  # 0.8 points > default 0.5
    info = json.loads((cand / "run.json").read_text())
    info["manifest"]["tolerances"] = {"default": 1.0}
    (cand / "run.json").write_text(json.dumps(info))
    assert run_tolerances(info) == Tolerances(default=1.0)
    assert compare_job.main(args) == 0
    assert compare_job.main([*args, "--tolerances", str(ROOT / "manifests" / "tolerances.yaml")]) == 1
