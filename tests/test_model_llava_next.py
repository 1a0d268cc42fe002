"""LLaVA-NeXT adapter on the tiny model (fp32, CPU): packing, per-grid pruning, batching by aspect ratio."""
from __future__ import annotations

import io

import pytest
import torch
from PIL import Image
from test_model_llava import SHAPES, drawing, png, spans

from icctp.budget import scaled_budget, split_budget
from pipeline.model import generation, llava_next, steps

SIZES = [(300, 300), (600, 300), (300, 600), (640, 480), (200, 500), (700, 690)]


def next_sample(i):
    color, _, question = SHAPES[i % len(SHAPES)]
    return dict(image=png(drawing(color, SIZES[i], offset=i)), prompt=question, question=question,
                noun_spans=spans(question))


pytestmark = pytest.mark.slow


def encoded(vlm, images):
    """Visual layouts of distinct images through the two halves: pixel_inputs (CPU), steps.encode."""
    keys = [str(i) for i in range(len(images))]
    return steps.encode(vlm.model, llava_next.pixel_inputs(vlm.processor, vlm.model.config, images, keys, vlm.dtype))


@pytest.fixture(scope="module")
def vlm(llava_next_vlm):
    return llava_next_vlm


def test_packing_matches_stock(vlm):
    images = [drawing("red", size) for size in SIZES[:4]]
    visuals = encoded(vlm, images)
    batch = vlm.processor.image_processor(images, return_tensors="pt")
    with torch.no_grad():
        stock = vlm.model.model.get_image_features(batch["pixel_values"], batch["image_sizes"]).pooler_output
    for visual, expected in zip(visuals, stock):
        torch.testing.assert_close(visual.tokens, expected)
        newline = vlm.model.model.image_newline
        assert bool((visual.tokens[visual.fixed] == newline).all())
        assert visual.n_features + visual.fixed.numel() == visual.n_visual
    assert len({v.n_visual for v in visuals}) == 4


def test_full_equals_stock_generate(vlm, monkeypatch):
    captured = []
    original = generation.greedy
    monkeypatch.setattr(generation, "greedy", lambda *a, **k: captured.append(original(*a, **k)) or captured[-1])
    for i in (1, 3):
        s = next_sample(i)
        out = vlm.generate([s], method="full", max_new_tokens=6)[0]
        inputs = vlm.processor(images=Image.open(io.BytesIO(s["image"])), text=vlm.render(s["prompt"]),
                               return_tensors="pt")
        with torch.no_grad():
            ref = vlm.model.generate(**inputs, max_new_tokens=6, do_sample=False, output_logits=True,
                                     return_dict_in_generate=True)
        text = vlm.processor.decode(ref.sequences[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        assert out["prediction"] == text.strip()
        assert out["n_visual"] == int((inputs["input_ids"] == vlm.image_token_id).sum())
        torch.testing.assert_close(captured[-1].first_logits[0], ref.logits[0][0].float(), atol=1e-4, rtol=0)


IN_LLM = {"fastv": {}, "dart": {}, "sparsevlm": {"layers": [0, 1], "budget_mode": "kept"}}


@pytest.mark.parametrize("method", ["icctp", "visionzip", "tome", *IN_LLM])
def test_batched_equals_per_sample(vlm, method):
    samples = [next_sample(i) for i in range(6)]
    kwargs = IN_LLM.get(method, {})
    batched = vlm.generate(samples, method=method, budget=64, max_new_tokens=4, **kwargs)
    alone = [vlm.generate([s], method=method, budget=64, max_new_tokens=4, **kwargs)[0] for s in samples]
    for b, a in zip(batched, alone):
        assert b["error"] is None
        for key in ("prediction", "n_visual", "n_kept", "kept_indices", "kept_clusters", "layer_tokens"):
            assert b[key] == a[key], key
    if method in ("icctp", *IN_LLM):
        assert len({b["n_kept"] for b in batched}) == (5 if method == "dart" else 6)  # dart keeps 4 + 8k tokens


def test_in_llm_all_tokens_equals_full(vlm):
    samples = [next_sample(i) for i in (0, 3)]
    full = vlm.generate(samples, method="full", max_new_tokens=4)
    for method, kwargs in IN_LLM.items():
        out = vlm.generate(samples, method=method, budget=576, max_new_tokens=4, **kwargs)
        assert [o["prediction"] for o in out] == [f["prediction"] for f in full], method
        assert [o["n_kept"] for o in out] == [f["n_visual"] for f in full], method


def test_per_grid_budgets_and_newlines(vlm):
    images = [drawing("blue", size) for size in SIZES[:3]]
    visuals = encoded(vlm, images)
    samples = [dict(next_sample(i), image=png(im)) for i, im in enumerate(images)]
    out = vlm.generate(samples, method="cls", budget=64, max_new_tokens=2)
    for o, visual in zip(out, visuals):
        total = scaled_budget(64, visual.n_features, 576)
        per_grid = split_budget(total, [int(g.numel()) for g in visual.grids])
        kept = torch.tensor(o["kept_indices"])
        assert o["n_visual"] == visual.n_visual
        assert o["n_kept"] == total + visual.fixed.numel()
        assert set(visual.fixed.tolist()) <= set(kept.tolist())
        for grid, budget in zip(visual.grids, per_grid):
            assert int(torch.isin(kept, grid).sum()) == budget


@pytest.mark.parametrize("method", ["visionzip", "tome"])
def test_tower_methods_keep_the_budget_per_pass_without_newlines(vlm, method):
    images = [drawing("blue", size) for size in SIZES[:3]]
    samples = [dict(next_sample(i), image=png(im)) for i, im in enumerate(images)]
    prepared = vlm.preprocessor.prepare(samples, with_centers=False)
    out = vlm.answer(prepared, method, 64, max_new_tokens=2)
    for o, row in zip(out, prepared.samples):
        passes = prepared.images[row.image_key].pixel_values.shape[0]
        assert o["n_kept"] == 64 * passes  # base + crops, 64 each (CLS included for visionzip)


def test_budget_at_least_n_equals_full(vlm):
    samples = [next_sample(i) for i in (0, 3)]
    full = vlm.generate(samples, method="full", max_new_tokens=4)
    out = vlm.generate(samples, method="icctp", budget=576, max_new_tokens=4)
    assert [o["prediction"] for o in out] == [f["prediction"] for f in full]
    assert [o["n_kept"] for o in out] == [f["n_visual"] for f in full]
