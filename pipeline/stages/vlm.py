"""vlm: encode, prune and generate for every (method, budget) variant of a run.

A callable class for ``map_batches``: ``__init__`` loads the model once per actor (one GPU
each on a GPU cluster), ``__call__`` maps one batch of preprocessed rows (``stages.preprocess``)
to prediction rows, one per row and pending variant, through ``VLM.answer`` (vision → select →
assemble → generate). A row whose model step fails keeps its place with ``error`` set: bad
inputs were flagged by the preprocess stage; if the batch call itself raises, each sample is
retried alone and only those that fail again become error rows.

``other_ms``: the actor's wall time on the batch (from receiving it to having every prediction row)
minus the vision/select/prefill/decode times of all its variants — Arrow conversions, retries,
text decoding, bookkeeping — divided evenly over the batch's prediction rows without error.
"""
from __future__ import annotations

import pyarrow as pa
import torch

from pipeline.model.timing import now_ms
from pipeline.model.vlm import STEP_TIMINGS
from pipeline.stages.preprocess import from_arrow
from pipeline.stages.schema import PREDICTION_SCHEMA

INPUT_FIELDS = ("benchmark", "sample_id", "image_id", "question", "prompt", "targets", "noun_phrases")


class VLMStage:
    """Runs ``load_vlm(model_path).answer`` per variant on a batch of preprocessed rows.

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
        start = now_ms(self.vlm.device)
        prepared = from_arrow(batch)
        dtypes = {str(im.pixel_values.dtype) for im in prepared.images.values()} - {str(self.vlm.dtype)}
        if dtypes:
            raise ValueError(f"preprocessed pixels are {sorted(dtypes)} but the model runs in {self.vlm.dtype}: "
                             "the preprocess stage must be given the model's dtype")
        fields = [f for f in (*INPUT_FIELDS, "pending") if f in batch.column_names]
        rows = batch.select(fields).to_pylist()
        out: list[dict] = []
        with self.vlm.reuse_vision():
            for v in self.variants:
                out.extend(self._run_variant(v, rows, prepared))
        _share_other(out, now_ms(self.vlm.device) - start)
        return pa.Table.from_pylist(out, schema=PREDICTION_SCHEMA)

    def _run_variant(self, v: dict, rows: list[dict], prepared) -> list[dict]:
        """Prediction rows of variant ``v`` for the ``rows`` that still need it."""
        key = variant_key(v["label"], v["budget"])
        todo = [i for i, r in enumerate(rows) if "pending" not in r or key in r["pending"]]
        if not todo:
            return []
        try:
            results = self._answer(prepared.subset(todo), v)
        except Exception:  # noqa: BLE001 - retry alone: only the samples that fail again become error rows
            results = []
            for i in todo:
                try:
                    results.extend(self._answer(prepared.subset([i]), v))
                except Exception as e:  # noqa: BLE001
                    results.append({"error": f"{type(e).__name__}: {e}"})
        return [_prediction_row(self.run_id, v, rows[i], res) for i, res in zip(todo, results, strict=True)]

    def _answer(self, prepared, v: dict) -> list[dict]:
        """``answer`` for one variant; on CUDA each result also carries the batch's peak memory (MiB)."""
        cuda = self.vlm.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.vlm.device)
        results = self.vlm.answer(prepared, method=v["method"], budget=v["budget"],
                                  max_new_tokens=self.max_new_tokens, **v["params"])
        if cuda:
            peak = torch.cuda.max_memory_allocated(self.vlm.device) / 2**20
            results = [dict(r, peak_memory_mb=peak) for r in results]
        return results


def _share_other(out: list[dict], total_ms: float) -> None:
    """Set ``other_ms`` of the rows without error to their even share of the time outside the steps."""
    valid = [r for r in out if r["error"] is None]
    steps_ms = sum(r[f] or 0.0 for r in valid for f in STEP_TIMINGS)
    for r in valid:
        r["other_ms"] = max(total_ms - steps_ms, 0.0) / len(valid)


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
        **{f: timings.get(f) for f in STEP_TIMINGS},
        "other_ms": None,
        "peak_memory_mb": res.get("peak_memory_mb"),
    }
