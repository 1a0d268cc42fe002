"""vlm: encode, prune and generate for every variant of a run.

A callable class for ``map_batches``: ``__init__`` loads the model once per actor (one GPU
each on a GPU cluster), ``__call__`` maps one batch of preprocessed rows (``stages.preprocess``)
to prediction rows, one per row and pending variant, through ``VLM.answer`` (vision → select →
assemble → generate). A row whose input the model cannot take (undecodable image, empty
question, a prompt longer than the model's context) keeps its place with ``error`` set; the
preprocess stage and the adapter decide that per sample. Anything else that raises is a bug or a
configuration error and fails the run instead of turning rows into errors that a rerun would
treat as done — except running out of device memory: a call that raises
``torch.OutOfMemoryError`` is retried on each half of its rows, down to single rows; a single
row that still does not fit becomes an error row saying so (``--retry-errors`` reruns it). Each
split is logged and counted in the output's ``oom_splits`` column (the batch's count on its
first row, 0 on the others), which the write stage sums and the driver records in ``run.json``.

``other_ms``: the actor's wall time on the batch (from receiving it to having every prediction row)
minus the vision/select/prefill/decode times of all its variants — Arrow conversions, text
decoding, bookkeeping — divided evenly over the batch's prediction rows without error.
"""
from __future__ import annotations

import logging

import pyarrow as pa
import torch

from pipeline.manifest import Variant
from pipeline.model.timing import STEP_TIMINGS, now_ms
from pipeline.stages.preprocess import from_arrow
from pipeline.stages.schema import OOM_SPLITS, PREDICTION_SCHEMA

logger = logging.getLogger(__name__)

INPUT_FIELDS = ("benchmark", "sample_id", "image_id", "question", "prompt", "targets", "noun_phrases", "noun_lang",
                "evidence_patches")


class VLMStage:
    """Runs ``load_vlm(model_path).answer`` per variant on a batch of preprocessed rows.

    ``variants``: the run's ``Variant``s; a row's ``pending`` column (list of ``Variant.key``),
    when present, restricts it to the variants still to do. ``max_new_tokens``: one limit, or a
    limit per benchmark (the row's ``benchmark``); rows of different limits in one batch are
    generated in separate calls. ``max_batch_tokens``: the token bound of one language-model batch
    (``VLM.answer``); None: ``batch_size`` rows bound it alone.
    """

    def __init__(self, model_path: str, variants: list[Variant], run_id: str, max_new_tokens: int | dict[str, int],
                 dtype: str | None = None, device: str | None = None, max_batch_tokens: int | None = None):
        from pipeline.model import load_vlm

        self._bind(load_vlm(model_path, device=device or _default_device(), dtype=dtype), variants, run_id,
                   max_new_tokens, max_batch_tokens)

    @classmethod
    def from_vlm(cls, vlm, variants: list[Variant], run_id: str, max_new_tokens: int | dict[str, int],
                 max_batch_tokens: int | None = None) -> VLMStage:
        """The stage around an already loaded ``vlm`` (a ``VLM``, or anything with its ``answer``,
        ``reuse_vision``, ``device`` and ``dtype``): one model shared by several stages in a process."""
        stage = cls.__new__(cls)
        stage._bind(vlm, variants, run_id, max_new_tokens, max_batch_tokens)
        return stage

    def _bind(self, vlm, variants: list[Variant], run_id: str, max_new_tokens: int | dict[str, int],
              max_batch_tokens: int | None) -> None:
        self.vlm = vlm
        self.variants = variants
        self.run_id = run_id
        self.max_new_tokens = max_new_tokens
        self.max_batch_tokens = max_batch_tokens
        self.oom_splits = 0

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
        self.oom_splits = 0
        with self.vlm.reuse_vision():
            for v in self.variants:
                out.extend(self._run_variant(v, rows, prepared))
        _share_other(out, now_ms(self.vlm.device) - start)
        table = pa.Table.from_pylist(out, schema=PREDICTION_SCHEMA)
        splits = [self.oom_splits if i == 0 else 0 for i in range(table.num_rows)]
        return table.append_column(OOM_SPLITS, pa.array(splits, pa.int64()))

    def _run_variant(self, v: Variant, rows: list[dict], prepared) -> list[dict]:
        """Prediction rows of variant ``v`` for the ``rows`` that still need it."""
        todo = [i for i, r in enumerate(rows) if "pending" not in r or v.key in r["pending"]]
        limits = self.max_new_tokens
        by_limit: dict[int, list[int]] = {}
        for i in todo:
            by_limit.setdefault(limits if isinstance(limits, int) else limits[rows[i]["benchmark"]], []).append(i)
        out = []
        for limit, group in by_limit.items():
            results = self._answer(prepared.subset(group), v, limit)
            out.extend(_prediction_row(self.run_id, v, rows[i], res) for i, res in zip(group, results, strict=True))
        return out

    def _answer(self, prepared, v: Variant, max_new_tokens: int) -> list[dict]:
        """``_answer_once``, retried on each half of the rows after an out-of-memory error; a single row
        that does not fit gets an error result."""
        try:
            return self._answer_once(prepared, v, max_new_tokens)
        except torch.OutOfMemoryError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else "no message"
        _release(self.vlm.device)  # outside the handler: the traceback no longer pins the failed call's tensors
        n = len(prepared.samples)
        if n == 1:
            logger.warning("out of memory on a single row (%s, max_new_tokens=%d): error row", v.key, max_new_tokens)
            return [{"error": f"OutOfMemoryError: one row does not fit on {self.vlm.device}: {reason}"}]
        half = (n + 1) // 2
        self.oom_splits += 1
        logger.warning("out of memory on %d rows (%s, max_new_tokens=%d): retrying as %d + %d rows", n, v.key,
                       max_new_tokens, half, n - half)
        return (self._answer(prepared.subset(list(range(half))), v, max_new_tokens)
                + self._answer(prepared.subset(list(range(half, n))), v, max_new_tokens))

    def _answer_once(self, prepared, v: Variant, max_new_tokens: int) -> list[dict]:
        """``answer`` for one variant; on CUDA each result also carries the batch's peak memory (MiB)."""
        cuda = self.vlm.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(self.vlm.device)
        results = self.vlm.answer(prepared, method=v.method, budget=v.budget, max_new_tokens=max_new_tokens,
                                  max_batch_tokens=self.max_batch_tokens, **v.params)
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


def _release(device: torch.device) -> None:
    """Return the cached blocks of a failed allocation to the device before retrying."""
    if device.type == "cuda":
        torch.cuda.empty_cache()


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
        "noun_lang": row.get("noun_lang"),
        "center_source": res.get("center_source"),
        "n_visual": res.get("n_visual"),
        "n_kept": res.get("n_kept"),
        "tokens_equiv": res.get("tokens_equiv"),
        "budget_mode": res.get("budget_mode"),
        "layer_tokens": res.get("layer_tokens"),
        "n_text": res.get("n_text"),
        "kept_indices": res.get("kept_indices"),
        "kept_clusters": res.get("kept_clusters"),
        "targets": row["targets"],
        "evidence_patches": row.get("evidence_patches"),
        **{f: timings.get(f) for f in STEP_TIMINGS},
        "other_ms": None,
        "peak_memory_mb": res.get("peak_memory_mb"),
    }
