"""vlm: encode, prune and generate for every (method, budget) variant of a run.

A callable class for ``map_batches``: ``__init__`` loads the model once per actor (one GPU
each on a GPU cluster), ``__call__`` maps one batch of input rows to prediction rows, one per
row and pending variant. A row whose model step fails keeps its place with ``error`` set: bad
inputs are flagged by the adapter; if the batch call itself raises, each sample is retried alone
and only those that fail again become error rows.
"""
from __future__ import annotations

import pyarrow as pa
import torch

from pipeline.stages.schema import PREDICTION_SCHEMA

TIMING_FIELDS = ("vision_ms", "select_ms", "prefill_ms", "decode_ms")


class VLMStage:
    """Runs ``load_vlm(model_path).generate`` per variant on a batch of rows.

    ``variants``: list of dicts ``{label, method, budget, params}``; a row's ``pending`` column
    (list of ``"label@budget"`` keys), when present, restricts it to the variants still to do.
    """

    def __init__(self, model_path: str, variants: list[dict], run_id: str, max_new_tokens: int,
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

    def _run_variant(self, v: dict, rows: list[dict]) -> list[dict]:
        """Prediction rows of variant ``v`` for the ``rows`` that still need it."""
        key = variant_key(v["label"], v["budget"])
        todo = [r for r in rows if "pending" not in r or key in r["pending"]]
        if not todo:
            return []
        samples = [
            {"image": r["image"], "prompt": r["prompt"], "question": r["question"],
             "noun_phrases": r.get("noun_phrases")}
            for r in todo
        ]
        try:
            results = self._generate(samples, v)
        except Exception:  # noqa: BLE001 - retry alone: only the samples that fail again become error rows
            results = []
            for sample in samples:
                try:
                    results.extend(self._generate([sample], v))
                except Exception as e:  # noqa: BLE001
                    results.append({"error": f"{type(e).__name__}: {e}"})
        return [_prediction_row(self.run_id, v, r, res) for r, res in zip(todo, results, strict=True)]

    def _generate(self, samples: list[dict], v: dict) -> list[dict]:
        """``generate`` for one variant; on CUDA each result also carries the batch's peak memory (MiB)."""
        cuda = self.vlm.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.vlm.device)
        results = self.vlm.generate(samples, method=v["method"], budget=v["budget"],
                                    max_new_tokens=self.max_new_tokens, **v["params"])
        if cuda:
            peak = torch.cuda.max_memory_allocated(self.vlm.device) / 2**20
            results = [dict(r, peak_memory_mb=peak) for r in results]
        return results


def variant_key(label: str, budget: int) -> str:
    return f"{label}@{budget}"


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _prediction_row(run_id: str, variant: dict, row: dict, res: dict) -> dict:
    timings = res.get("timings") or {}
    return {
        "run_id": run_id,
        "benchmark": row["benchmark"],
        "sample_id": row["sample_id"],
        "image_id": row["image_id"],
        "method": variant["label"],
        "budget": variant["budget"],
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
        "evidence_patches": row.get("evidence_patches"),
        **{f: timings.get(f) for f in TIMING_FIELDS},
        "peak_memory_mb": res.get("peak_memory_mb"),
    }
