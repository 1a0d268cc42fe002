"""Read a run directory written by ``jobs/eval_all.py``.

Layout::

    run.json                                                    resolved manifest, versions, times
    metrics.parquet                                             benchmark, variant, method, budget, metric, value, n, n_errors
    predictions/benchmark=B/variant=V/budget=K/*.parquet        one row per input sample
    inputs/benchmark=B/*.parquet                                prepared samples (sample_id, image, ...)
"""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from pipeline.manifest import FIXTURE_PREFIX
from pipeline.stages.schema import METRICS_SCHEMA

METRICS_COLUMNS = tuple(METRICS_SCHEMA)
PEAK_MEMORY_COLUMN = "peak_memory_mb"


def check_run_dir(run_dir: Path) -> Path:
    """Return ``run_dir`` as a Path; raise if it is not a directory holding ``metrics.parquet``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    if not (run_dir / "metrics.parquet").is_file():
        raise FileNotFoundError(f"run directory {run_dir} has no metrics.parquet")
    return run_dir


def read_run_info(run_dir: Path) -> dict:
    """``run.json`` as a dict (empty when the file is absent)."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def read_metrics(run_dir: Path) -> pl.DataFrame:
    """``metrics.parquet`` with the agreed columns and dtypes; a missing column is an error."""
    path = check_run_dir(run_dir) / "metrics.parquet"
    df = pl.read_parquet(path)
    missing = [c for c in METRICS_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; expected {list(METRICS_COLUMNS)}")
    return df.select(pl.col(c).cast(t) for c, t in METRICS_SCHEMA.items())


def prediction_files(run_dir: Path) -> list[Path]:
    return sorted((Path(run_dir) / "predictions").glob("benchmark=*/variant=*/budget=*/*.parquet"))


def scan_predictions(run_dir: Path) -> pl.LazyFrame | None:
    """All prediction rows of the run (None when the run has none).

    The rows carry ``benchmark``, ``variant`` and ``budget`` themselves, so the Hive directory
    names are not parsed. Every file has the pipeline's ``PREDICTION_SCHEMA``.
    """
    files = prediction_files(run_dir)
    if not files:
        return None
    return pl.scan_parquet(files, hive_partitioning=False)


def predicted_benchmarks(run_dir: Path) -> list[str]:
    """Benchmarks with a predictions partition, from the directory names."""
    root = Path(run_dir) / "predictions"
    return sorted(p.name.split("=", 1)[1] for p in root.glob("benchmark=*") if p.is_dir())


def input_files(run_dir: Path, benchmark: str) -> list[Path]:
    return sorted((Path(run_dir) / "inputs" / f"benchmark={benchmark}").glob("*.parquet"))


def model_id(run_info: dict) -> str | None:
    """The model path or hub id of the run's manifest (None without ``run.json``)."""
    return run_info["manifest"]["model"]["path"] if run_info else None


def model_config(run_info: dict):
    """The transformers config of the run's model when it is readable without network: a local
    directory, a ``fixture:<kind>`` model (resolved as the run resolved it: the committed toy-world
    model, or a built tiny model), or a hub id in the local HF cache; else None."""
    ident = model_id(run_info)
    if ident is None:
        return None
    if ident.startswith(FIXTURE_PREFIX):
        from pipeline.fixtures import MODEL_KINDS, tiny_model_path

        kind = ident[len(FIXTURE_PREFIX):]
        if kind not in MODEL_KINDS:
            return None
        ident = str(tiny_model_path(kind, build=False))
        if not (Path(ident) / "config.json").is_file():
            return None
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(ident, local_files_only=True)
    except (OSError, ValueError):
        return None
