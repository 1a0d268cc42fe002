"""The vlm stage: every row and pending variant yields one prediction row; only per-sample input
failures become error rows, anything else fails the run."""
from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from pipeline.manifest import Variant
from pipeline.stages.vlm import VLMStage


class FakeVLM:
    """Answers with the prompt reversed; flags a prompt containing 'bad' as an input error (as the
    adapter does for an undecodable image) and raises for any batch holding one with 'boom'."""

    device = torch.device("cpu")

    def __init__(self):
        self.calls = []
        self.limits = []

    def generate(self, samples, method, budget, max_new_tokens, **params):
        self.calls.append((method, budget, len(samples)))
        self.limits.append((max_new_tokens, [s["prompt"] for s in samples]))
        if any("boom" in s["prompt"] for s in samples):
            raise RuntimeError("device fell over")
        return [{"error": "ImageError: undecodable"} if "bad" in s["prompt"] else
                {"prediction": s["prompt"][::-1], "n_visual": 576, "n_kept": min(budget, 576),
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


VARIANTS = [Variant("full", "full", 576), Variant("icctp", "icctp", 64)]


def test_one_row_per_row_and_variant():
    out = stage(VARIANTS)(rows(["ab", "cd", "ef"])).to_pylist()
    assert [(r["sample_id"], r["method"], r["budget"]) for r in out] == [
        ("0", "full", 576), ("1", "full", 576), ("2", "full", 576),
        ("0", "icctp", 64), ("1", "icctp", 64), ("2", "icctp", 64)]
    assert [r["prediction"] for r in out[:3]] == ["ba", "dc", "fe"]


def test_pending_restricts_variants():
    out = stage(VARIANTS)(rows(["ab", "cd"], pending=[["icctp@64"], ["full@576", "icctp@64"]])).to_pylist()
    assert [(r["sample_id"], r["method"]) for r in out] == [("1", "full"), ("0", "icctp"), ("1", "icctp")]


def test_rows_carry_the_variant_label_and_the_method():
    relabelled = [Variant("icctp-a0.2", "icctp", 64, {"alpha": 0.2})]
    out = stage(relabelled)(rows(["ab"])).to_pylist()
    assert [(r["variant"], r["method"], r["budget"]) for r in out] == [("icctp-a0.2", "icctp", 64)]


def test_input_failure_is_an_error_row_in_place():
    out = stage(VARIANTS[:1])(rows(["ab", "bad", "ef"])).to_pylist()
    assert [r["prediction"] for r in out] == ["ba", None, "fe"]
    assert [r["error"] for r in out] == [None, "ImageError: undecodable", None]


def test_a_raising_batch_fails_the_stage_instead_of_writing_error_rows():
    s = stage(VARIANTS[:1])
    with pytest.raises(RuntimeError, match="device fell over"):
        s(rows(["ab", "boom", "ef"]))
    assert s.vlm.calls == [("full", 576, 3)]


def test_each_benchmark_generates_with_its_own_limit():
    s = stage(VARIANTS[:1])
    s.max_new_tokens = {"pope": 128, "mmvet": 1024}
    out = s(rows(["ab", "cd", "ef"], benchmarks=["pope", "mmvet", "pope"])).to_pylist()
    assert s.vlm.limits == [(128, ["ab", "ef"]), (1024, ["cd"])]
    assert sorted((r["sample_id"], r["prediction"]) for r in out) == [("0", "ba"), ("1", "dc"), ("2", "fe")]
