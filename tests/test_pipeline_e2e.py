"""End to end on the fixtures: every row once, error rows kept, resume after SIGKILL, determinism."""
from __future__ import annotations

import subprocess
import time
import warnings
from pathlib import Path

import polars as pl
import pytest
from raytools import REPO, eval_all_cmd, kill_started, ray_env, short_tmpdir

pytestmark = pytest.mark.slow
MANIFEST = str(REPO / "tests" / "data" / "e2e.yaml")
LIMIT = "12"
VOLATILE = ["run_id", "vision_ms", "select_ms", "prefill_ms", "decode_ms", "other_ms"]
KEY = ["benchmark", "method", "budget", "sample_id"]


def run_job(out: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    tmp = short_tmpdir()
    try:
        return subprocess.run(eval_all_cmd("--manifest", MANIFEST, "--limit", LIMIT, "--output", str(out),
                                           "--address", "local"),
                              env=ray_env(tmp), cwd=REPO, capture_output=True, text=True, timeout=timeout)
    finally:
        kill_started(tmp)


def predictions(run: Path) -> pl.DataFrame:
    files = sorted((run / "predictions").rglob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]).drop(VOLATILE).sort(KEY)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, fixtures_root):
    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    proc = run_job(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return out, proc.stdout


def test_every_input_row_yields_one_row_per_variant(full_run, fixtures_root):
    run, stdout = full_run
    preds = predictions(run)
    inputs = pl.concat([pl.read_parquet(f) for f in sorted((run / "inputs").rglob("shard-*.parquet"))])
    n_in = inputs.group_by("benchmark").len().sort("benchmark")
    bad_total = pl.read_parquet(fixtures_root / "data" / "bad_rows.parquet").height
    assert dict(n_in.iter_rows()) == {"bad_rows": min(bad_total, 12), "mmbench_cn": 12, "mmbench_cn_en": 12,
                                      "pope": 12, "vqav2": 12}
    variants = {("full", 576), ("icctp", 64), ("random", 64)}
    for (bench, method, budget), g in preds.group_by("benchmark", "method", "budget"):
        assert (method, budget) in variants
        assert sorted(g["sample_id"]) == sorted(inputs.filter(pl.col("benchmark") == bench)["sample_id"])
    assert preds.height == inputs.height * len(variants)
    assert "report:" in stdout


def test_bad_rows_become_error_rows_counted_in_metrics_and_report(full_run):
    run, _ = full_run
    preds = predictions(run)
    bad = preds.filter(pl.col("benchmark") == "bad_rows")
    errors = bad.filter(pl.col("error").is_not_null())
    assert errors.height > 0 and errors["prediction"].null_count() == errors.height
    assert preds.filter(pl.col("benchmark") != "bad_rows")["error"].null_count() == \
        preds.filter(pl.col("benchmark") != "bad_rows").height
    metrics = pl.read_parquet(run / "metrics.parquet")
    per_variant = errors.group_by("method", "budget").len()
    for method, budget, n_err in per_variant.iter_rows():
        got = metrics.filter((pl.col("benchmark") == "bad_rows") & (pl.col("method") == method)
                             & (pl.col("budget") == budget))["n_errors"].unique().to_list()
        assert got == [n_err]
    assert "error" in (run / "report.md").read_text().lower()


def test_chinese_questions_get_chinese_nouns_and_heatmaps_draw_them(full_run, tmp_path):
    from pipeline.report.heatmap import heatmaps_for_run

    run, _ = full_run
    icctp = predictions(run).filter(pl.col("method") == "icctp")
    langs = dict(icctp.group_by("benchmark").agg(pl.col("noun_lang").unique()).iter_rows())
    assert langs == {"bad_rows": ["en"], "mmbench_cn": ["zh"], "mmbench_cn_en": ["en"], "pope": ["en"], "vqav2": ["en"]}
    cn = icctp.filter(pl.col("benchmark") == "mmbench_cn")
    assert (cn["center_source"] == "nouns").all()
    assert all(p and all("\u4e00" <= ch <= "\u9fff" for ch in "".join(p)) for p in cn["noun_phrases"].to_list())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = heatmaps_for_run(run, 10, tmp_path)
    assert [str(w.message) for w in caught if "Glyph" in str(w.message)] == []
    assert any(p.name.startswith("mmbench_cn_") and not p.name.startswith("mmbench_cn_en") for p in paths)


def test_pruned_rows_keep_the_budget(full_run):
    preds = predictions(full_run[0]).filter(pl.col("error").is_null())
    full = preds.filter(pl.col("method") == "full")
    assert (full["n_kept"] == full["n_visual"]).all()
    pruned = preds.filter(pl.col("method") != "full")
    assert (pruned["n_kept"] == 64).all() and (pruned["kept_indices"].list.len() == 64).all()


def test_resume_after_sigkill_equals_uninterrupted_run(full_run, tmp_path):
    out = tmp_path / "killed"
    tmp = short_tmpdir()
    proc = subprocess.Popen(eval_all_cmd("--manifest", MANIFEST, "--limit", LIMIT, "--output", str(out),
                                         "--address", "local"),
                            env=ray_env(tmp), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "predictions").rglob("part-*.parquet"))) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the job finished before it could be killed"
    finally:
        kill_started(tmp, group=proc.pid)
        proc.wait()
    partial = len(list((out / "predictions").rglob("part-*.parquet")))
    assert partial >= 2 and not (out / "metrics.parquet").exists()

    again = run_job(out)
    assert again.returncode == 0, again.stderr[-5000:]
    resumed, reference = predictions(out), predictions(full_run[0])
    assert resumed.select(KEY).is_duplicated().sum() == 0
    assert resumed.select(KEY).equals(reference.select(KEY))
    differing = [c for c in resumed.columns if not resumed[c].equals(reference[c])]
    assert not differing, {c: (resumed.filter(resumed[c] != reference[c]).select(KEY + [c]).head(3).to_dicts(),
                               reference.filter(resumed[c] != reference[c])[c].head(3).to_list()) for c in differing}
    assert pl.read_parquet(out / "metrics.parquet").sort("benchmark", "method", "budget", "metric").equals(
        pl.read_parquet(full_run[0] / "metrics.parquet").sort("benchmark", "method", "budget", "metric"))


def test_retry_errors_replaces_error_rows_and_equals_uninterrupted_run(full_run, tmp_path):
    import shutil

    out = tmp_path / "with_errors"
    shutil.copytree(full_run[0], out)
    part = sorted((out / "predictions" / "benchmark=pope").rglob("part-*.parquet"))[0]
    table = pl.read_parquet(part)
    broken = table.with_columns(
        pl.when(pl.int_range(pl.len()) < 2).then(None).otherwise(pl.col("prediction")).alias("prediction"),
        pl.when(pl.int_range(pl.len()) < 2).then(pl.lit("RuntimeError: transient")).otherwise(pl.col("error"))
        .alias("error"))
    broken.write_parquet(part)

    tmp = short_tmpdir()
    try:
        proc = subprocess.run(eval_all_cmd("--manifest", MANIFEST, "--limit", LIMIT, "--output", str(out),
                                           "--address", "local", "--retry-errors"),
                              env=ray_env(tmp), cwd=REPO, capture_output=True, text=True, timeout=600)
    finally:
        kill_started(tmp)
    assert proc.returncode == 0, proc.stderr[-5000:]
    reference = predictions(full_run[0])
    input_errors = reference["error"].is_not_null().sum()  # bad_rows: retried too, and they fail again
    assert f"({min(2, table.height) + input_errors} new)" in proc.stdout
    retried = predictions(out)
    assert retried.select(KEY).is_duplicated().sum() == 0
    assert retried.drop("run_id", strict=False).equals(reference.drop("run_id", strict=False))
