"""write_report on a synthetic run directory: aggregate, unscored line, efficiency, plots."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import polars as pl
import pytest
from test_plots import assert_png

from pipeline.fixtures.synthetic_run import write_synthetic_run
from pipeline.report import write_report
from pipeline.report.efficiency import flops_model, new_tokens, other_share
from pipeline.report.writer import load_tables

ROOT = Path(__file__).resolve().parents[1]


def linear_flops(model, n_visual, n_text, n_new):
    """A stand-in cost model: 1 TFLOP per prompt token."""
    total = 1e12 * (n_visual + n_text)
    return {"vision": 0, "projector": 0, "prefill": total, "decode": 0, "total": total}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("runs") / "run1", benchmarks=("vqav2", "mme", "mmvet"),
                               methods=("full", "icctp"), budgets=(576, 64), n_samples=4)


def test_report_tables_and_efficiency(run):
    text = write_report(run, flops_fn=linear_flops).read_text()
    # Acc.: full (78 + 1510/20) / 2; icctp@64 keeps 1 - 0.12 x (1 - 64/576) of each
    assert "| full | 576 | 76.75 | 2 | 100 |" in text
    assert "| icctp | 64 | 68.56 | 2 | 89.33 |" in text
    assert "Not scored: mmvet (8 rows, 2 errors)." in text
    assert "| icctp | 64 | 69.68 | 4 | 1 | 89.3 |" in text  # vqav2 accuracy in %, n, errors, retention
    assert "| icctp | 64 | 1348.93 | 337.23 | 4 | 1 | 89.3 |" in text  # MME in MME points
    # efficiency: 9 rows without error (3 per benchmark); TFLOPs (64 + 40); reduction 1 - 104/616
    assert "| icctp | 64 | – | 9 | 576 | 64 | 64 | 40 | 104 | 83.1 | 20 | 0.5 | 10.4 | 15.6 | 89.3 |" in text
    assert "| full | 576 | – | 9 | 576 | 576 | 576 | 40 | 616 | 0 | 20 | 0 | 61.6 | 20.8 | 100 |" in text
    assert "Mixed budget modes" not in text
    for name in ("accuracy_vs_budget", "retention_vs_reduction", "latency_vs_budget"):
        assert f"](plots/{name}.png)" in text
        assert_png(run / "plots" / f"{name}.png")


def test_efficiency_uses_icctp_flops_for_a_known_model(run):
    from icctp.flops import llava_flops

    eff = load_tables(run).efficiency
    full = eff.filter(pl.col("method") == "full").row(0, named=True)
    pruned = eff.filter(pl.col("method") == "icctp").row(0, named=True)
    assert full["tflops"] == pytest.approx(llava_flops("llava-1.5-7b", 576, 40, 16)["total"] / 1e12)
    assert pruned["tflops"] == pytest.approx(llava_flops("llava-1.5-7b", 64, 40, 16)["total"] / 1e12)
    assert pruned["reduction"] == pytest.approx((1 - pruned["tflops"] / full["tflops"]) * 100)


def test_in_llm_rows_count_flops_per_layer_and_flag_mixed_budget_modes(tmp_path):
    from icctp.flops import llava_flops

    run = write_synthetic_run(tmp_path / "run", benchmarks=("vqav2",), methods=("full", "icctp", "fastv"),
                              budgets=(64,), n_samples=3)
    tables = load_tables(run)
    fastv = tables.efficiency.filter(pl.col("method") == "fastv").row(0, named=True)
    assert fastv["budget_mode"] == "kept" and fastv["n_kept"] == 64
    assert fastv["tokens_equiv"] == pytest.approx((2 * 576 + 30 * 64) / 32)
    profile = [576] * 2 + [64] * 30
    assert fastv["tflops"] == pytest.approx(llava_flops("llava-1.5-7b", 576, 40, 16, layer_tokens=profile)["total"]
                                            / 1e12)
    icctp = tables.efficiency.filter(pl.col("method") == "icctp").row(0, named=True)
    assert fastv["tflops"] > icctp["tflops"]
    text = write_report(run).read_text()
    assert ("**Mixed budget modes.** Budget 64 compares methods under different budget modes: fastv keep 64 after "
            "their last pruning layer") in text and "icctp average 64 over the layers" in text


def test_unknown_model_says_why_no_tflops(tmp_path):
    run = write_synthetic_run(tmp_path / "run", benchmarks=("vqav2",), methods=("full", "icctp"),
                              budgets=(576, 64), n_samples=2)
    info = json.loads((run / "run.json").read_text())
    info["manifest"]["model"] = {"path": "someone/unknown-model"}
    (run / "run.json").write_text(json.dumps(info))
    text = write_report(run).read_text()
    assert "TFLOPs not computed: the run's model is neither one of" in text
    assert "| tflops |" not in text


def test_the_toy_world_model_gets_tflops_from_its_own_config(tmp_path):
    from icctp.flops import llava_flops
    from pipeline.fixtures import tiny_model_path
    from pipeline.report.runs import model_config

    run = write_synthetic_run(tmp_path / "run", benchmarks=("vqav2",), methods=("full", "icctp"),
                              budgets=(576, 64), n_samples=2)
    info = json.loads((run / "run.json").read_text())
    info["manifest"]["model"] = {"path": "fixture:toyworld"}
    (run / "run.json").write_text(json.dumps(info))
    config = model_config(info)
    assert config.text_config.hidden_size == 128 and config.vision_config.num_hidden_layers == 2
    assert model_config({"manifest": {"model": {"path": str(tiny_model_path("toyworld"))}}}).to_dict() == config.to_dict()
    tables = load_tables(run)
    assert tables.flops_note is None
    pruned = tables.efficiency.filter(pl.col("method") == "icctp").row(0, named=True)
    assert pruned["tflops"] == pytest.approx(llava_flops(config, 64, 40, 16)["total"] / 1e12)


def test_peak_memory_is_reported_when_recorded(tmp_path):
    run = write_synthetic_run(tmp_path / "run", benchmarks=("vqav2",), methods=("full", "icctp"),
                              budgets=(576, 64), n_samples=2)
    part = run / "predictions" / "benchmark=vqav2" / "variant=icctp" / "budget=64" / "part-0.parquet"
    pl.read_parquet(part).with_columns(pl.lit(812.0).alias("peak_memory_mb")).write_parquet(part)
    eff = load_tables(run, flops_fn=linear_flops).efficiency
    assert dict(eff.select("method", "peak_memory_mb").iter_rows()) == {"full": None, "icctp": 812.0}


def test_run_info_helpers():
    assert flops_model({"manifest": {"model": {"path": "llava-hf/llava-1.5-13b-hf"}}}) == "llava-1.5-13b"
    assert flops_model({"manifest": {"model": {"path": "llava-hf/llava-v1.6-vicuna-7b-hf"}}}) == "llava-next-7b"
    assert flops_model({"manifest": {"model": {"path": "fixture:llava15"}}}) is None
    assert new_tokens({"manifest": {"generation": {"max_new_tokens": 8}}}) == 8
    per_benchmark = {"mmvet": {"max_new_tokens": 1024}, "pope": {"max_new_tokens": None}}
    assert new_tokens({"datasets": {"mmvet": {"source": {"max_new_tokens": 1024}}},
                       "manifest": {"benchmarks": per_benchmark, "generation": {"max_new_tokens": 128}}}) == 128
    assert new_tokens({}) == 16


@pytest.mark.slow  # a whole report and a heatmap through jobs/report.py
def test_report_job_writes_heatmaps(run, capsys):
    spec = importlib.util.spec_from_file_location("job_report", ROOT / "jobs" / "report.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job.main([str(run), "--heatmaps", "1"]) == 0
    text = (run / "report.md").read_text()
    assert "## Kept-token heatmaps" in text
    maps = sorted((run / "heatmaps").glob("*.png"))
    assert len(maps) == 1 and f"](heatmaps/{maps[0].name})" in text
    assert job.main([str(run), "--heatmaps", "1", "--variant", "nope"]) == 2
    assert "no prediction row" in capsys.readouterr().err


def test_other_share_is_the_actor_time_outside_the_steps():
    rows = pl.LazyFrame({"method": ["cls"] * 3, "budget": [64] * 3, "error": [None, None, "bad"],
                         "n_visual": [576] * 3, "n_kept": [64] * 3, "n_text": [40] * 3,
                         "vision_ms": [10.0, 10.0, 0.0], "select_ms": [1.0, 1.0, 0.0], "prefill_ms": [4.0, 4.0, 0.0],
                         "decode_ms": [3.0, 3.0, 0.0], "other_ms": [2.0, 4.0, None]})
    assert other_share(rows) == pytest.approx(100.0 * 6.0 / 42.0)
    assert other_share(rows.drop("other_ms")) is None


def test_a_many_metric_benchmark_shows_its_quoted_metrics_and_links_the_full_csv(tmp_path):
    from pipeline.evaluators.pope import pope_metrics
    from pipeline.stages.score import METRICS_SCHEMA

    run = write_synthetic_run(tmp_path / "run", benchmarks=("pope",), methods=("full", "icctp"), budgets=(576, 64),
                              n_samples=4)
    answers = pl.DataFrame({"prediction": ["yes", "no", "yes", "yes", "no", "no"],
                            "answer": ["yes", "no", "no", "yes", "yes", "no"],
                            "category": ["adversarial", "adversarial", "popular", "popular", "random", "random"]})
    values = pope_metrics(answers)
    assert len(values) == 21  # accuracy, precision, recall, f1, yes_ratio x (3 categories + pooled) + mean_f1
    rows = [("pope", m, m, b, name, value, 6, 0) for m, b in (("full", 576), ("icctp", 64))
            for name, value in values.items()]
    pl.DataFrame(rows, schema=METRICS_SCHEMA, orient="row").write_parquet(run / "metrics.parquet")
    text = write_report(run, flops_fn=linear_flops).read_text()
    assert ("| variant | method | budget | mean_f1 | pooled/accuracy | pooled/f1 | pooled/yes_ratio | n | errors "
            "| retention |") in text
    assert "All 21 metrics: [report_pope.csv](report_pope.csv)." in text
    assert '<a href="report_pope.csv">report_pope.csv</a>' in (run / "report.html").read_text()
    full = pl.read_csv(run / "report_pope.csv")
    assert full.height == 2 and set(values) <= set(full.columns)
    assert full["random/precision"].to_list() == [pytest.approx(values["random/precision"] * 100)] * 2
