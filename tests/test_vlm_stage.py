"""The vlm stage: every row and pending variant yields one prediction row; only per-sample input
failures become error rows, anything else fails the run; the batch time outside the model steps is
shared as ``other_ms``."""
from __future__ import annotations

import contextlib
import itertools

import pyarrow as pa
import pytest
import torch

from pipeline.manifest import Variant
from pipeline.model.inputs import PreparedBatch, PreparedSample
from pipeline.model.visual import ImagePixels
from pipeline.stages import vlm as vlm_stage
from pipeline.stages.preprocess import to_arrow
from pipeline.stages.vlm import VLMStage

BOOM = 666
BAD = 13


class FakeVLM:
    """Answers ``p<seed>`` with 1 ms of vision per row; flags seed ``BAD`` as an input error (as the
    adapter does for an image it cannot take) and raises for any batch holding seed ``BOOM``."""

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self):
        self.calls = []
        self.limits = []

    def answer(self, prepared, method, budget, max_new_tokens, **params):
        self.calls.append((method, budget, len(prepared.samples)))
        self.limits.append((max_new_tokens, [s.seed for s in prepared.samples]))
        if any(s.seed == BOOM for s in prepared.samples):
            raise RuntimeError("device fell over")
        return [{"error": "ImageError: undecodable"} if s.seed == BAD else
                {"prediction": f"p{s.seed}", "n_visual": 576, "n_kept": min(budget, 576),
                 "timings": {"vision_ms": 1.0, "select_ms": 0.0, "prefill_ms": 0.0, "decode_ms": 0.0}}
                for s in prepared.samples]

    def reuse_vision(self):
        return contextlib.nullcontext()


def stage(variants):
    return VLMStage.from_vlm(FakeVLM(), variants, "r", 4)


def rows(seeds, pending=None, benchmarks=None, phrases=None, langs=None):
    n = len(seeds)
    cols = {"benchmark": benchmarks or ["pope"] * n, "sample_id": [str(i) for i in range(n)], "image_id": ["i"] * n,
            "question": ["q"] * n, "prompt": ["q"] * n, "targets": ["{}"] * n, "noun_lang": langs or ["en"] * n}
    if pending is not None:
        cols["pending"] = pending
    image = ImagePixels("k", torch.zeros(1, 3, 2, 2), (2, 2))
    samples = [PreparedSample(image_key="k", text_ids=[9], image_pos=0, seed=seed, phrases=p)
               for seed, p in zip(seeds, phrases or [[] for _ in seeds])]
    return to_arrow(pa.table(cols), PreparedBatch(samples, {"k": image}))


VARIANTS = [Variant("full", "full", 576), Variant("icctp", "icctp", 64)]


def test_one_row_per_row_and_variant():
    out = stage(VARIANTS)(rows([1, 2, 3])).to_pylist()
    assert [(r["sample_id"], r["method"], r["budget"]) for r in out] == [
        ("0", "full", 576), ("1", "full", 576), ("2", "full", 576),
        ("0", "icctp", 64), ("1", "icctp", 64), ("2", "icctp", 64)]
    assert [r["prediction"] for r in out[:3]] == ["p1", "p2", "p3"]


def test_pending_restricts_variants():
    out = stage(VARIANTS)(rows([1, 2], pending=[["icctp@64"], ["full@576", "icctp@64"]])).to_pylist()
    assert [(r["sample_id"], r["method"]) for r in out] == [("1", "full"), ("0", "icctp"), ("1", "icctp")]


def test_rows_carry_the_variant_label_and_the_method():
    relabelled = [Variant("icctp-a0.2", "icctp", 64, {"alpha": 0.2})]
    out = stage(relabelled)(rows([1])).to_pylist()
    assert [(r["variant"], r["method"], r["budget"]) for r in out] == [("icctp-a0.2", "icctp", 64)]


def test_input_failure_is_an_error_row_in_place():
    out = stage(VARIANTS[:1])(rows([1, BAD, 3])).to_pylist()
    assert [r["prediction"] for r in out] == ["p1", None, "p3"]
    assert [r["error"] for r in out] == [None, "ImageError: undecodable", None]


def test_a_raising_batch_fails_the_stage_instead_of_writing_error_rows():
    s = stage(VARIANTS[:1])
    with pytest.raises(RuntimeError, match="device fell over"):
        s(rows([1, BOOM, 3]))
    assert s.vlm.calls == [("full", 576, 3)]


def test_each_benchmark_generates_with_its_own_limit():
    s = stage(VARIANTS[:1])
    s.max_new_tokens = {"pope": 128, "mmvet": 1024}
    out = s(rows([1, 2, 3], benchmarks=["pope", "mmvet", "pope"])).to_pylist()
    assert s.vlm.limits == [(128, [1, 3]), (1024, [2])]
    assert sorted((r["sample_id"], r["prediction"]) for r in out) == [("0", "p1"), ("1", "p2"), ("2", "p3")]


def test_other_ms_is_the_batch_time_outside_the_steps_shared_over_valid_rows(monkeypatch):
    clock = itertools.count(0, 100.0)  # the stage reads the clock twice: 0 ms at entry, 100 ms at the end
    monkeypatch.setattr(vlm_stage, "now_ms", lambda device: next(clock))
    out = stage(VARIANTS)(rows([1, BAD, 3])).to_pylist()
    valid = [r for r in out if r["error"] is None]
    assert len(valid) == 4 and sum(r["vision_ms"] for r in valid) == 4.0
    assert [r["other_ms"] for r in valid] == [pytest.approx(96.0 / 4)] * 4
    assert [r["other_ms"] for r in out if r["error"]] == [None, None]


def test_pixels_in_another_dtype_than_the_model_are_refused():
    s = stage(VARIANTS)
    s.vlm.dtype = torch.bfloat16
    with pytest.raises(ValueError, match="model's dtype"):
        s(rows([1]))


def test_rows_keep_the_phrase_texts_and_the_extractor_language():
    out = stage(VARIANTS[:1])(rows([1, 2], phrases=[["猫"], ["dog", "ball"]], langs=["zh", "en"])).to_pylist()
    assert [r["noun_phrases"] for r in out] == [["猫"], ["dog", "ball"]]
    assert [r["noun_lang"] for r in out] == ["zh", "en"]
