"""One evaluation run: manifest in, run directory out.

The data path, top to bottom::

    prepare (driver thread, per benchmark: HF split → inputs/benchmark=*/shard-*.parquet, question rows,
             + images/images-*.parquet, each image of the shard once; resumable)
      → per wave of prepared benchmarks (``pipeline.waves``: the first starts while the rest prepare):
      read_parquet (question files only) → repartition(block_rows) → [PendingFilter on resume]
      → nouns (CPU actors) → preprocess (CPU actors: fetch the batch's images by key, decode, image processor, tokenize)
      → model (``ModelStage``, default VLMStage: actors, GPU or CPU: vision, select, assemble, generate)
      → write (atomic part files) → score (driver, polars, one variant at a time) → metrics.parquet, report.md

Run directory: ``run.json``, ``inputs/``, ``predictions/benchmark=*/variant=*/budget=*/``,
``metrics.parquet``, ``report.md``. Rerunning with the same directory resumes: the driver
decides per input shard what is pending (``pipeline.stages.resume``), finished shards are not
read again, nothing is lost or duplicated.
"""
from __future__ import annotations

import datetime as dt
import functools
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
from pipeline.manifest import FIXTURE_PREFIX, Compute, Manifest, Variant
from pipeline.model.vlm import resolve_dtype
from pipeline.report import write_report
from pipeline.stages.atomic import write_json_atomic
from pipeline.stages.nouns import NounStage
from pipeline.stages.prepare import SUCCESS, prepare_benchmark
from pipeline.stages.preprocess import PreprocessStage
from pipeline.stages.resume import PendingFilter, ResumePlan, drop_error_rows, plan_resume
from pipeline.stages.schema import OOM_SPLITS
from pipeline.stages.score import score_partitions, scoring_card
from pipeline.stages.vlm import VLMStage
from pipeline.stages.write import WriteStage
from pipeline.watch import watched
from pipeline.waves import waves

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
                "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "resumed": 0}
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


@dataclass
class ModelStage:
    """The model stage of the chain: a ``map_batches`` callable class and its constructor kwargs.

    The chain also passes ``variants`` (``Variant``s) and ``run_id``; ``__call__`` maps a block of
    rows (with ``pending`` on resume) to prediction rows. ``preprocess``: ``(model_path, dtype)``
    of the CPU preprocess stage that runs before it, or None for a stage that takes raw question rows
    (images by key: ``pipeline.stages.shard_images.ImageStore``).
    """

    cls: type
    kwargs: dict
    preprocess: tuple[str, str] | None = None


def vlm_stage(manifest: Manifest) -> ModelStage:
    """The real model stage: ``VLMStage`` on the manifest's model, fed by the preprocess stage."""
    model_path = resolve_model_path(manifest.model.path)
    device = "cuda" if manifest.compute.num_gpus else "cpu"
    dtype = str(resolve_dtype(manifest.model.dtype, device)).removeprefix("torch.")
    return ModelStage(VLMStage, dict(model_path=model_path, max_new_tokens=manifest.max_new_tokens(), dtype=dtype,
                                     max_batch_tokens=manifest.compute.max_batch_tokens),
                      preprocess=(model_path, dtype))


FOOTER_ENV = "RAY_DATA_PARQUET_FOOTER_NUM_ACTORS"
FOOTER_READERS = 2


def limit_footer_readers() -> None:
    """Ray Data's Parquet reader lists files on a pool of footer-reading actors, 32 unless ``FOOTER_ENV``
    says otherwise (read when a dataset is created). A run's question files are few and small, one footer
    each, so unless the user set it the pool is ``FOOTER_READERS`` actors: on a small cluster 32 actor
    processes cost more than the reads. Call before the prepare thread starts (``setenv`` is not thread-safe)."""
    os.environ.setdefault(FOOTER_ENV, str(FOOTER_READERS))


def build_chain(plan: ResumePlan, compute: Compute, model: ModelStage, variants: list[Variant], run_id: str,
                predictions_dir: Path, noun_langs: dict[str, str] | None = None):
    """The Ray Data chain read → [PendingFilter] → nouns → [preprocess] → model → write over the shards
    ``plan`` leaves to do; ``noun_langs``: the nouns setting per benchmark entry."""
    import ray
    from ray.data import ActorPoolStrategy

    # ``path``: the shard each row comes from, where the preprocess stage finds its image file.
    ds = ray.data.read_parquet(plan.shards, partitioning=None, num_cpus=0.25, include_paths=True)
    ds = ds.repartition(target_num_rows_per_block=compute.block_rows)
    if plan.pending:
        keys = [v.key for v in variants]
        ds = ds.map_batches(PendingFilter, fn_constructor_args=(plan.pending, keys), batch_format="pyarrow",
                            batch_size=None, compute=ActorPoolStrategy(size=1), num_cpus=0.25)
    ds = ds.map_batches(NounStage, fn_constructor_args=(noun_langs or {},), batch_format="pyarrow",
                        batch_size=compute.block_rows, compute=ActorPoolStrategy(size=compute.nouns_actors),
                        num_cpus=compute.nouns_num_cpus)
    if model.preprocess is not None:
        actors = compute.preprocess_actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // 4)
        ds = ds.map_batches(PreprocessStage, fn_constructor_args=model.preprocess, batch_format="pyarrow",
                            batch_size=compute.batch_size, num_cpus=compute.preprocess_num_cpus,
                            compute=ActorPoolStrategy(min_size=1, max_size=actors))
    ds = ds.map_batches(
        model.cls, fn_constructor_kwargs=dict(variants=variants, run_id=run_id, **model.kwargs),
        batch_format="pyarrow", batch_size=compute.batch_size,
        compute=ActorPoolStrategy(min_size=1, max_size=compute.vlm_actors, initial_size=compute.vlm_actors),
        num_cpus=compute.vlm_num_cpus, num_gpus=compute.num_gpus or None, resources=compute.vlm_resources or None,
    )
    return ds.map_batches(WriteStage, fn_constructor_args=(str(predictions_dir),), batch_format="pyarrow",
                          batch_size=None, compute=ActorPoolStrategy(size=1), num_cpus=0.25)


def input_shards(run_dir: Path, benchmarks) -> dict[str, list[Path]]:
    """Prepared input shards per benchmark entry, in shard order."""
    return {name: sorted((run_dir / "inputs" / f"benchmark={name}").glob("shard-*.parquet")) for name in benchmarks}


def score_run(run_dir: Path, manifest: Manifest) -> pl.DataFrame:
    """Check the predictions of ``run_dir`` cover its inputs exactly once, score them, write ``metrics.parquet``."""
    variants = manifest.variants()
    cards = {name: scoring_card(name, src) for name, src in manifest.benchmarks.items()}
    metrics = score_partitions(run_dir / "predictions", input_shards(run_dir, manifest.benchmarks), variants, cards)
    metrics.write_parquet(run_dir / "metrics.parquet")
    return metrics


def drain(summaries) -> tuple[int, int]:
    """(rows written, out-of-memory splits) summed over the write stage's summary tables."""
    written = splits = 0
    for table in summaries:
        written += sum(table.column("n").to_pylist())
        splits += sum(table.column(OOM_SPLITS).to_pylist())
    return written, splits


def run_eval(manifest: Manifest, run_dir: Path, *, limit: int | None = None, address: str | None = None,
             retry_errors: bool = False, model: ModelStage | None = None) -> RunResult:
    """Prepare, run the chain on what is pending (a wave at a time), score and report; ``model`` defaults to ``vlm_stage``.
    ``retry_errors`` first drops the error rows of a previous attempt so that they run again."""
    limit_footer_readers()
    run_dir = Path(run_dir).resolve()
    info = open_run(manifest, run_dir, limit)
    compute = manifest.compute
    variants = manifest.variants()
    predictions_dir = run_dir / "predictions"
    if retry_errors:
        drop_error_rows(predictions_dir)
    inputs = {name: run_dir / "inputs" / f"benchmark={name}" for name in manifest.benchmarks}
    jobs = {name: functools.partial(prepare_benchmark, name, src, inputs[name], compute.shard_rows, limit)
            for name, src in manifest.benchmarks.items()}
    prepared: dict[str, dict] = {}
    written = rows_total = 0
    for wave in waves(jobs, prepared, ready=lambda name: (inputs[name] / SUCCESS).exists()):
        shards = [s for files in input_shards(run_dir, wave).values() for s in files]
        plan = plan_resume(shards, predictions_dir, variants)
        rows_total += plan.rows_done + plan.rows_todo
        if not plan.shards:
            continue
        init_ray(address)
        ds = build_chain(plan, compute, model or vlm_stage(manifest), variants, info["run_id"], predictions_dir,
                         {name: src.nouns for name, src in manifest.benchmarks.items()})
        new, oom_splits = drain(watched(ds.iter_batches(batch_format="pyarrow", batch_size=None),
                                        compute.stall_timeout_s))
        written += new
        info["oom_splits"] = info.get("oom_splits", 0) + oom_splits
        if oom_splits:
            logging.getLogger(__name__).warning("%d model batches were split after running out of memory", oom_splits)
    info["datasets"] = {name: prepared[name] for name in manifest.benchmarks}
    write_json_atomic(info, run_dir / "run.json")

    metrics = score_run(run_dir, manifest)
    report = write_report(run_dir)
    info["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json_atomic(info, run_dir / "run.json")
    return RunResult(run_dir, written, rows_total, metrics, report)
