"""One evaluation run: manifest in, run directory out.

The data path, top to bottom::

    prepare (driver, per benchmark: HF split → inputs/benchmark=*/shard-*.parquet)
      → read_parquet → repartition(block_rows) → [PendingFilter on resume]
      → nouns (CPU actors) → preprocess (CPU actors: decode, image processor, tokenize)
      → vlm (model actors, GPU or CPU: vision, select, assemble, generate) → write (atomic part files)
      → score (driver, polars) → metrics.parquet, report.md

Run directory: ``run.json``, ``inputs/``, ``predictions/benchmark=*/variant=*/budget=*/``,
``metrics.parquet``, ``report.md``. Rerunning with the same directory resumes: finished rows
are skipped, nothing is lost or duplicated.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import polars as pl

from pipeline.fixtures import tiny_model_path
from pipeline.manifest import FIXTURE_PREFIX, Manifest
from pipeline.model.vlm import resolve_dtype
from pipeline.report import write_report
from pipeline.stages.nouns import NounStage
from pipeline.stages.preprocess import PreprocessStage
from pipeline.stages.prepare import input_ids, prepare_benchmark, write_json_atomic
from pipeline.stages.resume import PendingFilter, drop_error_rows, scan_done
from pipeline.stages.score import check_complete, read_predictions, score_predictions, scoring_card
from pipeline.stages.vlm import VLMStage
from pipeline.stages.write import WriteStage

PACKAGES = ("icctp-eval", "torch", "transformers", "ray", "spacy", "datasets", "pyarrow", "polars")


@dataclass
class RunResult:
    run_dir: Path
    rows_written: int
    rows_total: int
    metrics: pl.DataFrame
    report: Path | None


def resolve_model_path(path: str) -> str:
    if path.startswith(FIXTURE_PREFIX):
        return str(tiny_model_path(path[len(FIXTURE_PREFIX):]))
    return path


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    out = {}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            pass
    out["python"] = sys.version.split()[0]
    return out


def open_run(manifest: Manifest, run_dir: Path, limit: int | None) -> dict:
    """Create ``run.json`` or, on resume, check the directory belongs to the same run.

    A resumed run may use other ``compute`` settings (batch size, actors, GPUs) and tolerances;
    everything that decides a prediction must be the same.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "run.json"
    resolved = manifest.model_dump(mode="json")
    if path.exists():
        info = json.loads(path.read_text())
        volatile = ("compute", "tolerances")
        same = {k: v for k, v in info["manifest"].items() if k not in volatile} == \
            {k: v for k, v in resolved.items() if k not in volatile}
        if not same or info.get("limit") != limit:
            raise ValueError(
                f"{run_dir} holds a run of a different manifest or --limit; resume only with the same "
                "model, benchmarks, methods, budgets and --limit, or choose a new --output"
            )
        info["manifest"] = resolved
        info["resumed"] = info.get("resumed", 0) + 1
    else:
        info = {"run_id": uuid.uuid4().hex[:12], "manifest": resolved, "limit": limit,
                "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "resumed": 0}
    info.update(git_commit=_git_commit(), versions=_versions())
    write_json_atomic(info, path)
    return info


def init_ray(address: str | None) -> None:
    """Connect to ``address``; ``None`` → the running cluster if any (``auto``), else start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    if address != "local":
        try:
            ray.init(address=address or "auto", logging_level=logging.WARNING)
            return
        except ConnectionError:
            if address:
                raise
    # Logical CPUs are scheduling tokens: on a 2-core machine the model actor, the spaCy actor, the
    # writer and Ray Data's file listing/reading tasks must all fit at once or the pipeline stalls.
    ray.init(num_cpus=max(4, os.cpu_count() or 1), include_dashboard=False, logging_level=logging.WARNING)


def run_eval(manifest: Manifest, run_dir: Path, *, limit: int | None = None, address: str | None = None,
             retry_errors: bool = False) -> RunResult:
    """Run (or resume) ``manifest`` into ``run_dir``; ``retry_errors`` first drops the error rows of
    a previous attempt so that they run again."""
    import ray
    from ray.data import ActorPoolStrategy

    run_dir = Path(run_dir).resolve()
    info = open_run(manifest, run_dir, limit)
    compute = manifest.compute
    prepared = {
        name: prepare_benchmark(name, src, run_dir / "inputs" / f"benchmark={name}", compute.shard_rows, limit)
        for name, src in manifest.benchmarks.items()
    }
    info["datasets"] = prepared
    write_json_atomic(info, run_dir / "run.json")
    expected = {name: input_ids(run_dir / "inputs" / f"benchmark={name}") for name in prepared}

    variants = manifest.variants()
    keys = [v.key for v in variants]
    predictions_dir = run_dir / "predictions"
    if retry_errors:
        drop_error_rows(predictions_dir)
    done = scan_done(predictions_dir)
    total = sum(map(len, expected.values())) * len(keys)
    written = 0
    if len(done) < total:
        init_ray(address)
        files = sorted(str(p) for p in (run_dir / "inputs").glob("benchmark=*/shard-*.parquet"))
        ds = ray.data.read_parquet(files, partitioning=None, num_cpus=0.25)
        ds = ds.repartition(target_num_rows_per_block=compute.block_rows)
        if done:
            ds = ds.map_batches(PendingFilter, fn_constructor_args=(done, keys), batch_format="pyarrow",
                                batch_size=None, compute=ActorPoolStrategy(size=1), num_cpus=0.25)
        ds = ds.map_batches(NounStage, fn_constructor_args=({n: s.nouns for n, s in manifest.benchmarks.items()},),
                            batch_format="pyarrow", batch_size=compute.block_rows,
                            compute=ActorPoolStrategy(size=compute.nouns_actors), num_cpus=compute.nouns_num_cpus)
        model_path = resolve_model_path(manifest.model.path)
        dtype = str(resolve_dtype(manifest.model.dtype, "cuda" if compute.num_gpus else "cpu")).removeprefix("torch.")
        preprocess_actors = compute.preprocess_actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // 4)
        ds = ds.map_batches(PreprocessStage, fn_constructor_args=(model_path, dtype), batch_format="pyarrow",
                            batch_size=compute.batch_size, num_cpus=compute.preprocess_num_cpus,
                            compute=ActorPoolStrategy(min_size=1, max_size=preprocess_actors))
        ds = ds.map_batches(
            VLMStage,
            fn_constructor_kwargs=dict(model_path=model_path, variants=variants,
                                       run_id=info["run_id"], max_new_tokens=manifest.max_new_tokens(),
                                       dtype=dtype),
            batch_format="pyarrow", batch_size=compute.batch_size, compute=ActorPoolStrategy(size=compute.vlm_actors),
            num_cpus=compute.vlm_num_cpus, num_gpus=compute.num_gpus or None,
        )
        ds = ds.map_batches(WriteStage, fn_constructor_args=(str(predictions_dir),), batch_format="pyarrow",
                            batch_size=None, compute=ActorPoolStrategy(size=1), num_cpus=0.25)
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            written += sum(batch.column("n").to_pylist())

    preds = read_predictions(predictions_dir)
    check_complete(preds, expected, variants)
    metrics = score_predictions(preds, {name: scoring_card(name, src) for name, src in manifest.benchmarks.items()})
    metrics.write_parquet(run_dir / "metrics.parquet")
    report = write_report(run_dir)
    info["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    write_json_atomic(info, run_dir / "run.json")
    return RunResult(run_dir, written, preds.height, metrics, report)
