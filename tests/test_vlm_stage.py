"""The vlm stage: every row and pending variant yields one prediction row; a failing batch is retried per sample."""
from __future__ import annotations

import pyarrow as pa
import torch

from pipeline.stages.vlm import VLMStage


class FakeVLM:
    """Answers with the prompt reversed; raises for any batch holding a prompt that contains 'boom'."""

    device = torch.device("cpu")

    def __init__(self):
        self.calls = []
        self.limits = []

    def generate(self, samples, method, budget, max_new_tokens, **params):
        self.calls.append((method, budget, len(samples)))
        self.limits.append((max_new_tokens, [s["prompt"] for s in samples]))
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


def rows(prompts, pending=None, benchmarks=None):
    cols = {"benchmark": benchmarks or ["pope"] * len(prompts), "sample_id": [str(i) for i in range(len(prompts))],
            "image": [b"x"] * len(prompts), "image_id": ["i"] * len(prompts), "question": prompts,
            "prompt": prompts, "targets": ["{}"] * len(prompts),
            "noun_phrases": [[] for _ in prompts]}
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


def test_each_benchmark_generates_with_its_own_limit():
    s = stage(VARIANTS[:1])
    s.max_new_tokens = {"pope": 128, "mmvet": 1024}
    out = s(rows(["ab", "cd", "ef"], benchmarks=["pope", "mmvet", "pope"])).to_pylist()
    assert s.vlm.limits == [(128, ["ab", "ef"]), (1024, ["cd"])]
    assert sorted((r["sample_id"], r["prediction"]) for r in out) == [("0", "ba"), ("1", "dc"), ("2", "fe")]
