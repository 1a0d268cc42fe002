"""Token-bounded model batches: chunks follow ``rows × longest row <= max_batch_tokens`` (longest rows
first), and predictions do not depend on the bound."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.model import batching, steps


def test_no_bound_is_one_chunk_in_input_order():
    assert batching.token_chunks([3, 9, 5], None) == [[0, 1, 2]]
    assert batching.token_chunks([], None) == []


def test_rows_are_packed_longest_first_under_the_padded_bound():
    # sorted: 9 (row 1), 7 (row 3), 5 (row 2), 5 (row 4), 3 (row 0)
    # [9]: 2 x 9 = 18 > 16 -> new chunk [7]: 2 x 7 = 14 <= 16 -> [7, 5]; 3 x 7 = 21 -> new chunk [5, 3]
    assert batching.token_chunks([3, 9, 5, 7, 5], 16) == [[1], [3, 2], [4, 0]]
    assert batching.token_chunks([3, 9, 5, 7, 5], 45) == [[1, 3, 2, 4, 0]]
    assert batching.token_chunks([3, 9, 5, 7, 5], 44) == [[1, 3, 2, 4], [0]]


def test_a_row_longer_than_the_bound_runs_alone():
    assert batching.token_chunks([50, 4, 4], 10) == [[0], [1, 2]]


def test_the_bound_must_be_positive():
    with pytest.raises(ValueError, match="max_tokens"):
        batching.token_chunks([1], 0)


@pytest.mark.slow
@pytest.mark.parametrize("kind,methods", [("llava15", [("full", 576), ("icctp", 64), ("visionzip", 64), ("fastv", 64)]),
                                          ("llava_next", [("full", 576), ("cls", 64)])])
def test_predictions_are_identical_with_and_without_a_token_bound(fixtures_root, monkeypatch, kind, methods):
    from model_batches import fixture_batch

    from pipeline.model import load_vlm

    vlm = load_vlm(fixtures_root / "models" / kind)
    prepared = fixture_batch(vlm, fixtures_root, 9)
    shapes = []
    generate = steps.generate

    def spy(model, inputs, *args, **kwargs):
        shapes.append(tuple(inputs.mask.shape))
        return generate(model, inputs, *args, **kwargs)

    monkeypatch.setattr(steps, "generate", spy)
    for method, budget in methods:
        whole = vlm.answer(prepared, method, budget, max_new_tokens=6)
        assert len(shapes) == 1
        longest = shapes.pop()[1]
        bound = 3 * longest - 1  # at most two rows of the longest length fit
        bounded = vlm.answer(prepared, method, budget, max_new_tokens=6, max_batch_tokens=bound)
        assert len(shapes) >= 3 and sum(b for b, _ in shapes) == 9  # no prompt is under half the longest
        assert all(b * length <= bound for b, length in shapes), shapes
        shapes.clear()
        assert all(r["error"] is None and r["prediction"] is not None for r in whole)
        for a, b in zip(whole, bounded, strict=True):
            assert a.pop("timings").keys() == b.pop("timings").keys()
            assert a == b


def test_the_manifest_bound_reaches_the_model_stage():
    from pipeline.manifest import load_manifest
    from pipeline.run import vlm_stage

    smoke = Path(__file__).resolve().parents[1] / "manifests" / "smoke.yaml"
    assert vlm_stage(load_manifest(smoke, {"compute": {"max_batch_tokens": 4096}})).kwargs["max_batch_tokens"] == 4096
    assert vlm_stage(load_manifest(smoke)).kwargs["max_batch_tokens"] is None
