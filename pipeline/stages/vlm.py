"""vlm: encode, prune and generate for every (method, budget) variant of a run.

A callable class for ``map_batches``: ``__init__`` loads the model once per actor (one GPU
each on a GPU cluster), ``__call__`` maps one batch of input rows to prediction rows, one per
row and pending variant. A row whose input the model cannot take (undecodable image, empty
question, a prompt longer than the model's context) keeps its place with ``error`` set; that is
decided per sample by the adapter. Anything else that raises is a bug or a configuration error
and fails the run instead of turning rows into errors that a rerun would treat as done.
"""
from __future__ import annotations

import pyarrow as pa
import torch

from pipeline.manifest import Variant
from pipeline.stages.schema import PREDICTION_SCHEMA, TIMING_COLUMNS



class VLMStage:
    """Runs ``load_vlm(model_path).generate`` per variant on a batch of rows.

    ``variants``: the run's ``Variant``s; a row's ``pending`` column (list of ``Variant.key``),
    when present, restricts it to the variants still to do. ``max_new_tokens``: one limit, or a
    limit per benchmark (the row's ``benchmark``); rows of different limits in one batch are
    generated in separate calls.
    """

    def __init__(self, model_path: str, variants: list[Variant], run_id: str, max_new_tokens: int | dict[str, int],
                 dtype: str | None = None, device: str | None = None):
        from pipeline.model import load_vlm

        self.vlm = load_vlm(model_path, device=device or _default_device(), dtype=dtype)
        self.variants = variants
        self.run_id = run_id
        self.max_new_tokens = max_new_tokens

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        out: list[dict] = []
        with self.vlm.reuse_vision():
            for v in self.variants:
                out.extend(self._run_variant(v, rows))
        return pa.Table.from_pylist(out, schema=PREDICTION_SCHEMA)

    def _run_variant(self, v: Variant, rows: list[dict]) -> list[dict]:
        """Prediction rows of variant ``v`` for the ``rows`` that still need it."""
        todo = [r for r in rows if "pending" not in r or v.key in r["pending"]]
        if not todo:
            return []
        limits = self.max_new_tokens
        by_limit: dict[int, list[dict]] = {}
        for r in todo:
            by_limit.setdefault(limits if isinstance(limits, int) else limits[r["benchmark"]], []).append(r)
        out = []
        for limit, group in by_limit.items():
            results = self._generate_rows(group, v, limit)
            out.extend(_prediction_row(self.run_id, v, r, res) for r, res in zip(group, results, strict=True))
        return out

    def _generate_rows(self, rows: list[dict], v: Variant, max_new_tokens: int) -> list[dict]:
        """Results for ``rows``, in order."""
        samples = [
            {"image": r["image"], "prompt": r["prompt"], "question": r["question"],
             "noun_phrases": r.get("noun_phrases")}
            for r in rows
        ]
        return self._generate(samples, v, max_new_tokens)

    def _generate(self, samples: list[dict], v: Variant, max_new_tokens: int) -> list[dict]:
        """``generate`` for one variant; on CUDA each result also carries the batch's peak memory (MiB)."""
        cuda = self.vlm.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.vlm.device)
        results = self.vlm.generate(samples, method=v.method, budget=v.budget,
                                    max_new_tokens=max_new_tokens, **v.params)
        if cuda:
            peak = torch.cuda.max_memory_allocated(self.vlm.device) / 2**20
            results = [dict(r, peak_memory_mb=peak) for r in results]
        return results


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _prediction_row(run_id: str, variant: Variant, row: dict, res: dict) -> dict:
    timings = res.get("timings") or {}
    return {
        "run_id": run_id,
        "benchmark": row["benchmark"],
        "sample_id": row["sample_id"],
        "image_id": row["image_id"],
        "variant": variant.label,
        "method": variant.method,
        "budget": variant.budget,
        "question": row["question"],
        "prompt": row["prompt"],
        "prediction": None if res.get("error") else res.get("prediction"),
        "error": res.get("error"),
        "noun_phrases": res.get("noun_phrases", row.get("noun_phrases")),
        "center_source": res.get("center_source"),
        "n_visual": res.get("n_visual"),
        "n_kept": res.get("n_kept"),
        "n_text": res.get("n_text"),
        "kept_indices": res.get("kept_indices"),
        "kept_clusters": res.get("kept_clusters"),
        "targets": row["targets"],
        **{f: timings.get(f) for f in TIMING_COLUMNS},
        "peak_memory_mb": res.get("peak_memory_mb"),
    }
