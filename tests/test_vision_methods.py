"""The vision-side baselines through the adapter on the tiny LLaVA-1.5: what reaches the language model
is the pure function's output on the tower states, projected; ToMe's merging tower without merges is
the stock tower; counts are honest."""
from __future__ import annotations

import pytest
import torch
from test_model_llava import sample

import icctp
from pipeline.model import compat, load_vlm, steps, tome, vision
from pipeline.model.vision import TowerStates

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vlm(fixtures_root):
    return load_vlm(fixtures_root / "models" / "llava15")


@pytest.fixture(scope="module")
def prepared(vlm):
    return vlm.preprocessor.prepare([sample(i) for i in range(4)], with_centers=False)


def _visuals(vlm, prepared):
    return steps.encode(vlm.model, list(prepared.images.values()))


def _spliced(vlm, prepared, method, budget, **params):
    visuals = _visuals(vlm, prepared)
    kept = steps.select(visuals, method, budget, seeds=[0] * len(visuals), **params)
    return visuals, kept


def test_visionzip_feeds_the_official_tokens_projected(vlm, prepared):
    visuals, kept = _spliced(vlm, prepared, "visionzip", 64)
    states = TowerStates.cat([v.states for v in visuals])
    tokens, dominant = icctp.visionzip_compress(states.hidden, states.cls_rows, states.keys, 54, 10)
    for b, keep in enumerate(kept):
        assert keep.n_kept == 64  # CLS counted inside the budget
        torch.testing.assert_close(keep.vision_tokens, tokens[b])
        assert keep.indices.tolist() == (dominant[b, 1:] - 1).tolist()  # 53 patches reach the LM unmerged
    inputs = steps.assemble(vlm.model, [[1, 5, 2]] * len(visuals), [1] * len(visuals), visuals, kept)
    assert inputs.embeds.shape[1] == 2 + 64
    torch.testing.assert_close(inputs.embeds[0, 1:65], compat.projector(vlm.model)(tokens[0]))


@pytest.mark.parametrize("adaptive", [True, False])
def test_prumerge_plus_count_is_per_image_and_recorded(vlm, prepared, adaptive):
    visuals, kept = _spliced(vlm, prepared, "prumerge_plus", 64, adaptive=adaptive)
    states = TowerStates.cat([v.states for v in visuals])
    ratio = 64 / (2 * 576)
    tokens = icctp.prumerge_plus(states.hidden[:, 1:], states.last_keys, states.last_query, adaptive, ratio)
    for keep, expected in zip(kept, tokens):
        assert keep.n_kept == expected.shape[0]
        torch.testing.assert_close(keep.vision_tokens, expected)
    counts = {keep.n_kept for keep in kept}
    assert counts == {65} if not adaptive else len(counts) > 1


def test_tome_without_merges_is_the_stock_tower_and_reaches_the_budget(vlm, prepared):
    pixels = torch.cat([im.pixel_values for im in prepared.images.values()])
    features, _, _ = vision.encode(vlm.model, pixels)
    unmerged, schedule = tome.merging_encode(vlm.model, pixels, keep=576)
    assert all(r == [0] for r in schedule)
    torch.testing.assert_close(unmerged, features, atol=1e-5, rtol=1e-5)
    merged, schedule = tome.merging_encode(vlm.model, pixels, keep=64)
    assert merged.shape == (pixels.shape[0], 64, features.shape[2])
    assert sum(sum(rounds) for rounds in schedule) == 576 - 64
    out = vlm.answer(prepared, "tome", 64, max_new_tokens=2)
    assert all(o["n_kept"] == 64 and o["n_visual"] == 576 and o["kept_indices"] is None for o in out)


def test_merge_rounds_on_a_deep_tower_are_the_exact_schedule():
    assert tome.merge_rounds(23, 577, 64) == [[r] for r in icctp.tome_schedule(23, 577, 64)]
    shallow = tome.merge_rounds(2, 577, 16)  # 577 -> 289 -> 145, then the last layer merges again
    assert shallow == [[288], [144, 72, 36, 18, 2]]
