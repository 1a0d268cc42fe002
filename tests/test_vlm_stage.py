"""The vlm stage: every row and pending variant yields one prediction row; a failing batch is retried per sample."""
from __future__ import annotations

import pyarrow as pa
import torch

from pipeline.stages.schema import NOUN_SPANS
from pipeline.stages.vlm import VLMStage


class FakeVLM:
    """Answers with the prompt reversed; raises for any batch holding a prompt that contains 'boom'."""

    device = torch.device("cpu")

    def __init__(self):
        self.calls, self.samples = [], []

    def generate(self, samples, method, budget, max_new_tokens, **params):
        self.calls.append((method, budget, len(samples)))
        self.samples.extend(samples)
        if any("boom" in s["prompt"] for s in samples):
            raise RuntimeError("device fell over")
        return [{"prediction": s["prompt"][::-1], "n_visual": 576, "n_kept": min(budget, 576),
                 "timings": {"vision_ms": 1.0}} for s in samples]

    def reuse_vision(self):
        import contextlib

        return contextlib.nullcontext()


def stage(variants):
    s = VLMStage.__new__(VLMStage)
    s.vlm, s.variants, s.run_id, s.max_new_tokens = FakeVLM(), variants, "r", 4
    return s


def rows(prompts, pending=None, spans=None, langs=None):
    cols = {"benchmark": ["pope"] * len(prompts), "sample_id": [str(i) for i in range(len(prompts))],
            "image": [b"x"] * len(prompts), "image_id": ["i"] * len(prompts), "question": prompts,
            "prompt": prompts, "targets": ["{}"] * len(prompts),
            "noun_spans": pa.array(spans or [[] for _ in prompts], type=NOUN_SPANS),
            "noun_lang": langs or ["en"] * len(prompts)}
    if pending is not None:
        cols["pending"] = pending
    return pa.table(cols)


VARIANTS = [{"label": "full", "method": "full", "budget": 576, "params": {}},
            {"label": "icctp", "method": "icctp", "budget": 64, "params": {}}]


def test_one_row_per_row_and_variant():
    out = stage(VARIANTS)(rows(["ab", "cd", "ef"])).to_pylist()
    assert [(r["sample_id"], r["method"], r["budget"]) for r in out] == [
        ("0", "full", 576), ("1", "full", 576), ("2", "full", 576),
        ("0", "icctp", 64), ("1", "icctp", 64), ("2", "icctp", 64)]
    assert [r["prediction"] for r in out[:3]] == ["ba", "dc", "fe"]


def test_pending_restricts_variants():
    out = stage(VARIANTS)(rows(["ab", "cd"], pending=[["icctp@64"], ["full@576", "icctp@64"]])).to_pylist()
    assert [(r["sample_id"], r["method"]) for r in out] == [("1", "full"), ("0", "icctp"), ("1", "icctp")]


def test_failed_batch_is_retried_per_sample_and_only_the_culprit_errs():
    s = stage(VARIANTS[:1])
    out = s(rows(["ab", "boom", "ef"])).to_pylist()
    assert [r["prediction"] for r in out] == ["ba", None, "fe"]
    assert out[1]["error"] == "RuntimeError: device fell over"
    assert [r["error"] for r in out[::2]] == [None, None]
    assert s.vlm.calls == [("full", 576, 3), ("full", 576, 1), ("full", 576, 1), ("full", 576, 1)]


def test_noun_spans_reach_the_model_and_rows_keep_texts_and_language():
    spans = [[{"text": "猫", "start": 2, "end": 3}], [{"text": "dog", "start": 9, "end": 12}, {"text": "ball", "start": 19, "end": 23}]]
    s = stage(VARIANTS[:1])
    out = s(rows(["图中猫是什么颜色？", "Does the dog have the ball?"], spans=spans, langs=["zh", "en"])).to_pylist()
    assert [x["noun_spans"] for x in s.vlm.samples] == spans
    assert [r["noun_phrases"] for r in out] == [["猫"], ["dog", "ball"]]
    assert [r["noun_lang"] for r in out] == ["zh", "en"]
