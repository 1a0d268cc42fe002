"""End to end on the fixtures, on the session's Ray head (a ``session_run``, in the background from the start
of the session): a job SIGKILLed once it has written two part files, then resumed with ``--retry-errors`` by
``ray job submit`` (the cluster path). The resumed run directory is what the tests read (every row once, error
rows kept, Chinese nouns, budgets), and it must equal, prediction by prediction and metric by metric, the
same manifest run in this process through the same stage callables without Ray."""
from __future__ import annotations

import subprocess
import sys
import time
import warnings
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
import torch
from raytools import REPO, eval_all_cmd, kill_started, ray_env
from session_runs import session_run
from toyworld_phrases import expected_phrases

pytestmark = pytest.mark.slow
MANIFEST = "tests/data/e2e.yaml"  # relative: the submitted job runs in its uploaded copy of the repository
LIMIT = "12"
VOLATILE = ["run_id", "vision_ms", "select_ms", "prefill_ms", "decode_ms", "other_ms"]
KEY = ["benchmark", "method", "budget", "sample_id"]
METRIC_KEY = ["benchmark", "method", "budget", "metric"]


def live_job_actors(address: str) -> set[str]:
    """Ids of the live actors of the cluster at ``address`` that belong to a job (not detached: Ray Data's own
    detached actors outlive the job that started them)."""
    from ray.util.state import list_actors

    return {a.actor_id for a in list_actors(address=address, filters=[("state", "=", "ALIVE")], detail=True,
                                            limit=10_000) if not a.is_detached}


def wait_for_actors(address: str, allowed: set[str], timeout: float = 120) -> None:
    """Block until every live job actor of the cluster is in ``allowed`` (a killed driver's actors die with it)."""
    deadline = time.monotonic() + timeout
    while extra := live_job_actors(address) - allowed:
        assert time.monotonic() < deadline, f"{len(extra)} actors of the killed job still alive"
        time.sleep(0.5)


def predictions(run: Path) -> pl.DataFrame:
    files = sorted((run / "predictions").rglob("*.parquet"))
    return pl.concat([pl.read_parquet(f) for f in files]).drop(VOLATILE).sort(KEY)


def make_transient(parts: list[Path], n: int) -> int:
    """Turn the first ``n`` rows written without an error (over ``parts``, in order) into transient failures;
    returns how many were turned."""
    done = 0
    for part in parts:
        table = pl.read_parquet(part)
        hit = [i for i, error in enumerate(table["error"].to_list()) if error is None][:n - done]
        if hit:
            mask = pl.lit(pl.Series([i in hit for i in range(table.height)]))
            table.with_columns(
                pl.when(mask).then(None).otherwise(pl.col("prediction")).alias("prediction"),
                pl.when(mask).then(pl.lit("RuntimeError: transient")).otherwise(pl.col("error")).alias("error"),
            ).write_parquet(part)
            done += len(hit)
    return done


@session_run
def killed_then_submitted(head, out):
    """``jobs/eval_all.py`` on the e2e manifest, SIGKILLed once it has written two part files; two of its written
    rows made to look like transient failures; then ``ray job submit --working-dir <repo> -- python
    jobs/eval_all.py ... --retry-errors`` on the same output. Returns the facts the tests check."""
    run = out / "run"
    before = live_job_actors(head.address)
    proc = subprocess.Popen(eval_all_cmd("--manifest", MANIFEST, "--limit", LIMIT, "--output", str(run),
                                         "--address", head.address),
                            env=ray_env(head.tmp), cwd=REPO, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 400
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((run / "predictions").rglob("part-*.parquet"))) >= 2:
                break
            time.sleep(0.1)
        alive_when_killed = proc.poll() is None
    finally:
        kill_started(str(run), group=proc.pid)  # the driver's process group (its command line names ``run``)
        proc.wait()
    wait_for_actors(head.address, before)
    parts = sorted((run / "predictions").rglob("part-*.parquet"))
    facts = {"alive_when_killed": alive_when_killed, "parts": len(parts),
             "metrics_when_killed": (run / "metrics.parquet").exists(), "transient": make_transient(parts, 2)}
    written = pl.concat([pl.read_parquet(f, columns=["error"]) for f in parts]) if parts else pl.DataFrame({"error": []})
    facts.update(written=written.height, written_errors=int(written["error"].is_not_null().sum()))
    facts["resumed"] = subprocess.run(
        [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", head.dashboard,
         "--working-dir", str(REPO), "--", "python", "jobs/eval_all.py", "--manifest", MANIFEST, "--limit", LIMIT,
         "--output", str(run), "--retry-errors"],
        env=ray_env(head.tmp), cwd=REPO, capture_output=True, text=True, timeout=600)
    return facts


@pytest.fixture(scope="module")
def reference(llava15_vlm, tmp_path_factory):
    """The e2e manifest run in this process without Ray: each entry prepared as the job prepares it, then
    nouns → preprocess → model (the session's tiny LLaVA-1.5, which is what the job loads; one thread, as in
    its actor) on slices of the manifest's batch size, scored with the run's scoring cards.
    Returns (predictions without the volatile columns, metrics)."""
    from pipeline.manifest import load_manifest
    from pipeline.run import resolve_model_path
    from pipeline.stages.nouns import NounStage
    from pipeline.stages.prepare import prepare_benchmark
    from pipeline.stages.preprocess import PreprocessStage
    from pipeline.stages.schema import OOM_SPLITS
    from pipeline.stages.score import score_predictions, scoring_card
    from pipeline.stages.shard_images import read_shard
    from pipeline.stages.vlm import VLMStage

    manifest = load_manifest(REPO / MANIFEST)
    compute, tmp = manifest.compute, tmp_path_factory.mktemp("reference")
    nouns = NounStage({name: src.nouns for name, src in manifest.benchmarks.items()})
    preprocess = PreprocessStage(resolve_model_path(manifest.model.path), "float32")
    model = VLMStage.from_vlm(llava15_vlm, manifest.variants(), "reference", manifest.max_new_tokens())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = []
        for name, source in manifest.benchmarks.items():
            prepare_benchmark(name, source, tmp / name, compute.shard_rows, int(LIMIT))
            table = nouns(pa.concat_tables([read_shard(f) for f in sorted((tmp / name).glob("shard-*.parquet"))]))
            for start in range(0, table.num_rows, compute.batch_size):
                out.append(model(preprocess(table.slice(start, compute.batch_size))).drop_columns([OOM_SPLITS]))
    finally:
        torch.set_num_threads(threads)
    preds = pl.from_arrow(pa.concat_tables(out))
    cards = {name: scoring_card(name, source) for name, source in manifest.benchmarks.items()}
    return preds.drop(VOLATILE).sort(KEY), score_predictions(preds, cards).sort(METRIC_KEY)


@pytest.fixture(scope="module")
def full_run(session_runs):
    """The resumed run: (run dir, the submitted job's stdout)."""
    out, facts = session_runs.result(killed_then_submitted)
    proc = facts["resumed"]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "succeeded" in proc.stdout
    return out / "run", proc.stdout


def test_resume_after_sigkill_with_retry_errors_equals_the_run_in_process(reference, full_run, session_runs):
    """A job SIGKILLed once it has written two part files leaves no metrics; resuming it with
    ``--retry-errors`` runs exactly what is missing plus every error row written so far (two rows made
    to look like transient failures, and the bad inputs, which fail again), and ends with the predictions
    and metrics of the same manifest run in this process without Ray, no row duplicated."""
    _, facts = session_runs.result(killed_then_submitted)
    assert facts["alive_when_killed"], "the job finished before it could be killed"
    assert facts["parts"] >= 2 and not facts["metrics_when_killed"]
    assert facts["transient"] == 2 and facts["written_errors"] >= 2
    run, stdout = full_run
    expected, expected_metrics = reference
    todo = expected.height - facts["written"] + facts["written_errors"]
    assert f"({todo} new)" in stdout
    resumed = predictions(run)
    assert resumed.select(KEY).is_duplicated().sum() == 0
    assert resumed.select(KEY).equals(expected.select(KEY))
    assert resumed.columns == expected.columns
    differing = [c for c in resumed.columns if not resumed[c].equals(expected[c])]
    assert not differing, {c: (resumed.filter(resumed[c] != expected[c]).select(KEY + [c]).head(3).to_dicts(),
                               expected.filter(resumed[c] != expected[c])[c].head(3).to_list()) for c in differing}
    assert pl.read_parquet(run / "metrics.parquet").sort(METRIC_KEY).equals(expected_metrics)


def test_every_input_row_yields_one_row_per_variant(full_run, fixtures_root):
    run, stdout = full_run
    preds = predictions(run)
    inputs = pl.concat([pl.read_parquet(f) for f in sorted((run / "inputs").rglob("shard-*.parquet"))])
    n_in = inputs.group_by("benchmark").len().sort("benchmark")
    bad_total = pl.read_parquet(fixtures_root / "data" / "bad_rows.parquet").height
    assert dict(n_in.iter_rows()) == {"bad_rows": min(bad_total, 12), "mmbench_cn": 12, "mmbench_cn_en": 12,
                                      "pope": 12, "toyworld_vqav2": 12, "vqav2": 12}
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
    assert langs == {"bad_rows": ["en"], "mmbench_cn": ["zh"], "mmbench_cn_en": ["en"], "pope": ["en"],
                     "toyworld_vqav2": ["en"], "vqav2": ["en"]}
    cn = icctp.filter(pl.col("benchmark") == "mmbench_cn")
    assert (cn["center_source"] == "nouns").all()
    assert all(p and all("\u4e00" <= ch <= "\u9fff" for ch in "".join(p)) for p in cn["noun_phrases"].to_list())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = heatmaps_for_run(run, 10, tmp_path)
    assert [str(w.message) for w in caught if "Glyph" in str(w.message)] == []
    assert any(p.name.startswith("mmbench_cn_") and not p.name.startswith("mmbench_cn_en") for p in paths)


def test_evidence_patches_reach_the_predictions_and_the_report(full_run):
    run, _ = full_run
    preds = predictions(run)
    inputs = pl.concat([pl.read_parquet(f) for f in sorted((run / "inputs" / "benchmark=toyworld_vqav2").glob("shard-*"))])
    toy = preds.filter(pl.col("benchmark") == "toyworld_vqav2").join(
        inputs.select("sample_id", pl.col("evidence_patches").alias("given")), on="sample_id")
    assert toy.height == 3 * inputs.height == 36
    assert toy["evidence_patches"].to_list() == toy["given"].to_list() and toy["given"].list.len().min() > 0
    assert preds.filter(pl.col("benchmark") != "toyworld_vqav2")["evidence_patches"].null_count() == \
        preds.height - toy.height
    assert "## Evidence coverage" in (run / "report.md").read_text()


def test_toy_questions_reach_the_model_actor_with_their_phrases_as_noun_centers(full_run):
    """The nouns stage's phrases travel through the chain as ``noun_spans`` and become ICCTP's centers."""
    toy = predictions(full_run[0]).filter((pl.col("benchmark") == "toyworld_vqav2") & (pl.col("method") == "icctp"))
    assert toy.height == 12 and toy["error"].null_count() == 12
    assert toy["center_source"].to_list() == ["nouns"] * 12
    for question, phrases in toy.select("question", "noun_phrases").iter_rows():
        assert phrases == expected_phrases(question), question


def test_pruned_rows_keep_the_budget(full_run):
    preds = predictions(full_run[0]).filter(pl.col("error").is_null())
    full = preds.filter(pl.col("method") == "full")
    assert (full["n_kept"] == full["n_visual"]).all()
    pruned = preds.filter(pl.col("method") != "full")
    assert (pruned["n_kept"] == 64).all() and (pruned["kept_indices"].list.len() == 64).all()
