"""A deterministic synthetic run directory with the layout of ``jobs/eval_all.py`` (run.json,
prepared input shards with PNG images, predictions, metrics.parquet), for report tests and the
README images; no model and no Ray involved.

Metric values follow a fixed curve: ``full`` scores a benchmark's base value, a pruned method
keeps ``1 - loss x (1 - budget / 576)`` of it with a per-method loss; ``mmvet`` (when listed)
is unscored: its metrics rows have metric and value null, as the score stage writes them.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageDraw

N_VISUAL = 576
BASE = {"vqav2": 0.78, "gqa": 0.62, "pope": 0.86, "textvqa": 0.58, "mme": 1510.0, "mmvet": None}
LOSS = {"full": 0.0, "icctp": 0.12, "cls": 0.2, "random": 0.35, "visionzip": 0.16, "dart": 0.15}
PHRASES = ["dog", "wooden bench", "red ball"]
QUESTION = "Is the dog on the wooden bench next to the red ball?"
METRICS_ROW = {"benchmark": pl.String, "method": pl.String, "budget": pl.Int64, "metric": pl.String,
               "value": pl.Float64, "n": pl.Int64, "n_errors": pl.Int64}
PREDICTION_SCHEMA = {
    "run_id": pl.String, "benchmark": pl.String, "sample_id": pl.String, "image_id": pl.String,
    "method": pl.String, "budget": pl.Int64, "question": pl.String, "prompt": pl.String,
    "prediction": pl.String, "error": pl.String, "noun_phrases": pl.List(pl.String),
    "noun_lang": pl.String, "center_source": pl.String, "n_visual": pl.Int64, "n_kept": pl.Int64, "n_text": pl.Int64,
    "kept_indices": pl.List(pl.Int32), "kept_clusters": pl.List(pl.Int32), "targets": pl.String,
    "vision_ms": pl.Float64, "select_ms": pl.Float64, "prefill_ms": pl.Float64, "decode_ms": pl.Float64,
}


def metric_value(benchmark: str, method: str, budget: int) -> float:
    """The synthetic headline value (fraction, MME perception in points)."""
    keep = 1.0 - LOSS[method] * (1.0 - min(budget, N_VISUAL) / N_VISUAL)
    return BASE[benchmark] * keep


def png_bytes(seed: int, size=(400, 300)) -> bytes:
    """A small PNG with a few coloured shapes."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.integers(0, size[0] - 60), rng.integers(0, size[1] - 60)
        draw.ellipse((x, y, x + 60, y + 60), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def kept_tokens(rng, method: str, budget: int) -> tuple[list[int], list[int] | None]:
    if method == "full" or budget >= N_VISUAL:
        return list(range(N_VISUAL)), None
    kept = np.sort(rng.choice(N_VISUAL, size=budget, replace=False))
    clusters = rng.integers(-1, len(PHRASES), size=budget) if method == "icctp" else None
    return kept.tolist(), None if clusters is None else clusters.tolist()


def write_synthetic_run(run_dir: Path, benchmarks=("vqav2", "mme", "mmvet"),
                        methods=("full", "icctp", "cls"), budgets=(576, 64, 32),
                        n_samples: int = 6, seed: int = 0) -> Path:
    """Write the run directory. As in the pipeline, ``full`` runs once at budget 576 and the
    other methods at the budgets below 576. Sample 0 of every benchmark is an error row
    (prediction null, ``error`` set, no kept tokens)."""
    run_dir = Path(run_dir)
    run_id = run_dir.name
    rng = np.random.default_rng(seed)
    metrics = []
    for bench in benchmarks:
        inputs = pl.DataFrame({
            "sample_id": [f"{bench}-{i}" for i in range(n_samples)],
            "image": [png_bytes(seed * 1000 + i) for i in range(n_samples)],
            "image_id": [f"img{i}" for i in range(n_samples)],
            "question": [QUESTION] * n_samples,
            "prompt": [QUESTION + "\nAnswer the question using a single word or phrase."] * n_samples,
            "targets": [json.dumps({"answer": "yes"}) for _ in range(n_samples)],
        }, schema_overrides={"image": pl.Binary})
        (run_dir / "inputs" / f"benchmark={bench}").mkdir(parents=True, exist_ok=True)
        inputs.write_parquet(run_dir / "inputs" / f"benchmark={bench}" / "part-0.parquet")
        for method in methods:
            for budget in (N_VISUAL,) if method == "full" else [b for b in budgets if b < N_VISUAL]:
                rows = []
                for i, row in enumerate(inputs.drop("image").iter_rows(named=True)):
                    error = "undecodable image" if i == 0 else None
                    kept, clusters = kept_tokens(rng, method, budget) if error is None else (None, None)
                    n_kept = len(kept) if kept is not None else None
                    rows.append({
                        "run_id": run_id, "benchmark": bench, "sample_id": row["sample_id"],
                        "image_id": row["image_id"], "method": method, "budget": budget,
                        "question": row["question"], "prompt": row["prompt"],
                        "prediction": None if error else "yes", "error": error,
                        "noun_phrases": PHRASES, "noun_lang": "en", "center_source": "nouns",
                        "n_visual": N_VISUAL, "n_kept": n_kept, "n_text": 40,
                        "kept_indices": kept, "kept_clusters": clusters, "targets": row["targets"],
                        "vision_ms": None if error else 20.0,
                        "select_ms": None if error else (0.0 if method == "full" else 0.5),
                        "prefill_ms": None if error else 0.1 * (n_kept + 40),
                        "decode_ms": None if error else 15.0 + 0.01 * n_kept,
                    })
                part = run_dir / "predictions" / f"benchmark={bench}" / f"method={method}" / f"budget={budget}"
                part.mkdir(parents=True, exist_ok=True)
                pl.DataFrame(rows, schema=PREDICTION_SCHEMA).write_parquet(part / "part-0.parquet")
                if BASE[bench] is None:
                    metrics.append((bench, method, budget, None, None, n_samples, 1))
                    continue
                names = ["perception", "cognition"] if bench == "mme" else ["accuracy"]
                for name in names:
                    value = metric_value(bench, method, budget) * (0.25 if name == "cognition" else 1.0)
                    metrics.append((bench, method, budget, name, value, n_samples, 1))
    pl.DataFrame(metrics, schema=list(METRICS_ROW), orient="row").write_parquet(run_dir / "metrics.parquet")
    info = {"run_id": run_id, "manifest": {"model": "llava-hf/llava-1.5-7b-hf", "max_new_tokens": 16,
                                           "benchmarks": list(benchmarks), "methods": list(methods),
                                           "budgets": list(budgets)},
            "git_commit": "0" * 40}
    (run_dir / "run.json").write_text(json.dumps(info, indent=1))
    return run_dir

