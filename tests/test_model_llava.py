"""LLaVA-1.5 adapter on the tiny model (fp32, CPU): equivalence with stock transformers and batching."""
from __future__ import annotations

import io

import pytest
import torch
from PIL import Image, ImageDraw

from icctp.nouns import Phrase
from pipeline.model import compat, generation, vision
from pipeline.nlp import question_phrases

SHAPES = [("red", (400, 300), "What color is the circle?"),
          ("blue", (300, 500), "Is there a blue circle in the picture? Answer the question using a single word."),
          ("green", (336, 336), "Where is the green shape?"),
          ("orange", (640, 200), "How many circles are there in this image of a street?"),
          ("purple", (250, 250), "What is the man holding?"),
          ("black", (500, 375), "Which animal is shown on the wooden bench next to the table?")]


def drawing(color, size, offset=0):
    im = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(im)
    draw.ellipse((20 + offset, 30, 160 + offset, 170), fill=color)
    draw.rectangle((size[0] // 2, size[1] // 2, size[0] - 10, size[1] - 10), fill="gray")
    return im


def png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def spans(question):
    """The question's noun-phrase spans from the pipeline's extractor."""
    ((phrases, _),) = question_phrases([question])
    return phrases


def sample(i, **extra):
    color, size, question = SHAPES[i % len(SHAPES)]
    return dict(image=png(drawing(color, size, offset=i)), prompt=question, question=question,
                noun_spans=spans(question), **extra)


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vlm(llava15_vlm):
    return llava15_vlm


@pytest.fixture(scope="module")
def eager(fixtures_root):
    """The same checkpoint with eager attention, which can return attention weights."""
    from transformers import LlavaForConditionalGeneration

    return LlavaForConditionalGeneration.from_pretrained(fixtures_root / "models" / "llava15",
                                                         attn_implementation="eager").eval()


def _stock(vlm, s, max_new_tokens):
    image = Image.open(io.BytesIO(s["image"]))
    inputs = vlm.processor(images=image, text=vlm.render(s["prompt"]), return_tensors="pt")
    with torch.no_grad():
        out = vlm.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                 output_logits=True, return_dict_in_generate=True)
    text = vlm.processor.decode(out.sequences[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    return text.strip(), out.logits[0][0]


def _capture_first_logits(monkeypatch):
    captured = []
    original = generation.greedy

    def spy(*args, **kwargs):
        captured.append(original(*args, **kwargs))
        return captured[-1]

    monkeypatch.setattr(generation, "greedy", spy)
    return captured


def test_cls_attention_hook_matches_eager(vlm, eager):
    images = [drawing(c, s) for c, s, _ in SHAPES[:3]]
    pixels = vlm.processor.image_processor(images, return_tensors="pt")["pixel_values"]
    feature_layer = vlm.model.config.vision_feature_layer
    with torch.no_grad():
        out = compat.vision_tower(eager)(pixels, output_attentions=True, return_dict=True)
    expected = out.attentions[feature_layer][:, :, 0, 1:].mean(1)
    features, cls_attn, states = vision.encode(vlm.model, pixels)
    assert vlm.model.config.vision_config._attn_implementation == "sdpa"
    # the tower states of the same pass: layer -2 output, its CLS rows per head and keys, last layer's q/k
    layers = compat.vision_encoder_layers(eager)
    with torch.no_grad():
        hidden = compat.vision_tower(eager)(pixels, output_hidden_states=True).hidden_states
        keys = layers[feature_layer].self_attn.k_proj(layers[feature_layer].layer_norm1(hidden[feature_layer - 1]))
        last_in = layers[-1].layer_norm1(hidden[-2])
        last_keys, last_query = layers[-1].self_attn.k_proj(last_in), layers[-1].self_attn.q_proj(last_in)[:, 0]
    torch.testing.assert_close(states.hidden, hidden[feature_layer])
    torch.testing.assert_close(states.cls_rows, out.attentions[feature_layer][:, :, 0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(states.keys, keys.view(3, 577, 4, -1).transpose(1, 2))
    torch.testing.assert_close(states.last_keys, last_keys)
    torch.testing.assert_close(states.last_query, last_query)
    assert cls_attn.shape == (3, 576)
    torch.testing.assert_close(cls_attn, expected, atol=1e-6, rtol=1e-5)
    stock = vlm.model.model.get_image_features(pixels, vision_feature_layer=feature_layer,
                                              vision_feature_select_strategy="default").pooler_output
    torch.testing.assert_close(features, torch.stack(list(stock)))


def test_full_equals_stock_generate(vlm, monkeypatch):
    captured = _capture_first_logits(monkeypatch)
    for i in range(3):
        s = sample(i)
        out = vlm.generate([s], method="full", max_new_tokens=8)[0]
        text, logits = _stock(vlm, s, 8)
        assert out["error"] is None
        assert out["prediction"] == text
        assert out["n_visual"] == out["n_kept"] == 576
        torch.testing.assert_close(captured[-1].first_logits[0], logits.float(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("method,kwargs", [
    ("full", {}), ("icctp", {"allocation": "paper"}), ("random", {}), ("visionzip_proj", {}), ("visionzip", {}),
    ("fastervlm", {}), ("tome", {}), ("prumerge_plus", {}), ("prumerge", {"adaptive": False}),
])
def test_batched_equals_per_sample(vlm, method, kwargs):
    samples = [sample(i) for i in range(6)]
    batched = vlm.generate(samples, method=method, budget=32, max_new_tokens=5, **kwargs)
    alone = [vlm.generate([s], method=method, budget=32, max_new_tokens=5, **kwargs)[0] for s in samples]
    for b, a in zip(batched, alone):
        assert b["error"] is None
        for key in ("prediction", "n_kept", "n_text", "kept_indices", "kept_clusters", "center_source"):
            assert b[key] == a[key], key
    assert len({b["n_text"] for b in batched}) > 1
    assert len({b["prediction"] for b in batched}) > 1
    if method == "icctp":
        assert len({b["n_kept"] for b in batched}) > 1
        assert all(len(b["kept_clusters"]) == len(b["kept_indices"]) for b in batched)


def test_budget_at_least_n_equals_full(vlm):
    samples = [sample(i) for i in range(3)]
    full = vlm.generate(samples, method="full", max_new_tokens=6)
    for method in ("icctp", "cls", "random"):
        out = vlm.generate(samples, method=method, budget=576, max_new_tokens=6)
        assert [o["prediction"] for o in out] == [f["prediction"] for f in full]
        assert all(o["n_kept"] == 576 for o in out)


def test_pruning_changes_kept_tokens_and_answers(vlm):
    samples = [sample(i) for i in range(6)]
    full = vlm.generate(samples, method="full", max_new_tokens=6)
    pruned = vlm.generate(samples, method="cls", budget=8, max_new_tokens=6)
    assert all(o["n_kept"] == 8 and len(o["kept_indices"]) == 8 for o in pruned)
    assert [o["prediction"] for o in pruned] != [f["prediction"] for f in full]


def test_same_image_encoded_once(vlm):
    seen = []
    handle = compat.vision_tower(vlm.model).register_forward_hook(lambda m, a, o: seen.append(a[0].shape[0]))
    try:
        shared = sample(0)["image"]
        samples = [dict(sample(i), image=shared) for i in range(3)] + [sample(3), sample(4)]
        samples.append(dict(sample(5), image=Image.open(io.BytesIO(shared))))
        vlm.generate(samples, method="cls", budget=16, max_new_tokens=2)
    finally:
        handle.remove()
    assert seen == [3]


def test_reuse_vision_encodes_each_image_once_across_methods_and_changes_nothing(vlm):
    samples = [sample(i) for i in range(4)]
    runs = [("full", 576), ("icctp", 16), ("cls", 8)]
    fresh = [vlm.generate(samples, method=m, budget=b, max_new_tokens=3) for m, b in runs]
    seen = []
    handle = compat.vision_tower(vlm.model).register_forward_hook(lambda m, a, o: seen.append(a[0].shape[0]))
    try:
        with vlm.reuse_vision():
            reused = [vlm.generate(samples, method=m, budget=b, max_new_tokens=3) for m, b in runs]
    finally:
        handle.remove()
    assert seen == [4]
    strip = lambda outs: [{k: v for k, v in o.items() if k != "timings"} for o in outs]  # noqa: E731
    assert [strip(o) for o in reused] == [strip(o) for o in fresh]


def test_random_is_independent_of_batch(vlm):
    samples = [sample(i) for i in range(3)]
    together = vlm.generate(samples, method="random", budget=16, max_new_tokens=2)
    reversed_ = vlm.generate(samples[::-1], method="random", budget=16, max_new_tokens=2)[::-1]
    assert [o["kept_indices"] for o in together] == [o["kept_indices"] for o in reversed_]
    assert together[0]["kept_indices"] != together[1]["kept_indices"]


def test_icctp_reports_phrases_and_center_source(vlm):
    given = dict(sample(5), noun_spans=[{"text": "the wooden bench", "start": 25, "end": 41}])
    no_noun = dict(sample(0), question="Why?", prompt="Why?", noun_spans=spans("Why?"))
    out = vlm.generate([sample(5), given, no_noun], method="icctp", budget=16, max_new_tokens=2)
    assert out[0]["center_source"] == "nouns" and out[0]["noun_phrases"] == ["animal", "wooden bench", "table"]
    assert out[1]["noun_phrases"] == ["the wooden bench"]
    assert out[2]["center_source"] == "instruction" and out[2]["noun_phrases"] == []
    wrong = vlm.generate([dict(sample(0), noun_spans=[Phrase("zebra", 0, 5)]), sample(1)], method="icctp", budget=16)
    assert "zebra" in wrong[0]["error"] and wrong[0]["prediction"] is None and wrong[1]["error"] is None
    with pytest.raises(ValueError, match="noun_spans"):  # the caller skipped the nouns stage: not a data failure
        vlm.generate([dict(sample(0), noun_spans=None)], method="icctp", budget=16)


def test_output_fields_and_max_new_tokens(vlm, monkeypatch):
    captured = _capture_first_logits(monkeypatch)
    out = vlm.generate([sample(0), sample(1)], method="cls", budget=16, max_new_tokens=3)
    assert captured[-1].tokens.shape == (2, 3)
    for o in out:
        assert set(o) >= {"prediction", "n_visual", "n_kept", "n_text", "kept_indices", "kept_clusters",
                          "noun_phrases", "center_source", "error", "timings"}
        assert set(o["timings"]) == {"vision_ms", "select_ms", "prefill_ms", "decode_ms"}
        assert o["kept_indices"] == sorted(o["kept_indices"])
    assert out[0]["n_text"] == len(vlm.tokenizer(vlm.render(sample(0)["prompt"])).input_ids) - 1


def test_bad_arguments_raise(vlm):
    with pytest.raises(ValueError, match="unknown method"):
        vlm.generate([sample(0)], method="nope")
    with pytest.raises(ValueError, match="budget"):
        vlm.generate([sample(0)], method="cls", budget=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        vlm.generate([sample(0)], method="cls", max_new_tokens=0)


IN_LLM = {"fastv": {}, "dart": {}, "sparsevlm": {"layers": [0, 1], "budget_mode": "kept"}}


@pytest.mark.parametrize("method", list(IN_LLM))
def test_in_llm_all_tokens_equals_full(vlm, method):
    samples = [sample(i) for i in range(4)]
    full = vlm.generate(samples, method="full", max_new_tokens=6)
    out = vlm.generate(samples, method=method, budget=576, max_new_tokens=6, **IN_LLM[method])
    assert [o["prediction"] for o in out] == [f["prediction"] for f in full]
    assert all(o["n_kept"] == 576 and o["layer_tokens"] == [576] * 3 for o in out)


@pytest.mark.parametrize("method,layer_tokens", [("fastv", [576, 576, 32]), ("dart", [576, 576, 36]),
                                                 ("sparsevlm", [576, 86, 34])])
def test_in_llm_batched_equals_per_sample(vlm, method, layer_tokens):
    samples = [sample(i) for i in range(6)]
    assert len({len(vlm.render(s["prompt"])) for s in samples}) > 1  # left padding differs per row
    batched = vlm.generate(samples, method=method, budget=32, max_new_tokens=6, **IN_LLM[method])
    alone = [vlm.generate([s], method=method, budget=32, max_new_tokens=6, **IN_LLM[method])[0] for s in samples]
    for key in ("prediction", "kept_indices", "n_kept", "tokens_equiv", "layer_tokens", "budget_mode"):
        assert [b[key] for b in batched] == [a[key] for a in alone], key
    # fastv: R = 32; dart: 4 + 8 * (32 // 8) = 36; sparsevlm at layers 0, 1 (kept mode, the 64 row's
    # shape scaled to 32 at the last stage): 70 + 16 clusters, then 32 + 2 clusters.
    assert all(b["layer_tokens"] == layer_tokens and b["n_kept"] == layer_tokens[-1] for b in batched)
    assert all(b["tokens_equiv"] == pytest.approx(sum(layer_tokens) / 3) for b in batched)
    full = vlm.generate(samples, method="full", max_new_tokens=6)
    assert [b["prediction"] for b in batched] != [f["prediction"] for f in full]


def test_in_llm_unreachable_budget_is_a_row_error(vlm):
    out = vlm.generate([sample(0), sample(1)], method="fastv", budget=64, max_new_tokens=2, budget_mode="equivalent")
    assert all(o["prediction"] is None and "unreachable" in o["error"] for o in out)


def test_fastv_keeps_top_last_token_attention_of_eager_model(vlm, eager):
    s = sample(3)
    inputs = vlm.processor(images=Image.open(io.BytesIO(s["image"])), text=vlm.render(s["prompt"]),
                           return_tensors="pt")
    with torch.no_grad():
        out = eager(**inputs, output_attentions=True)
    image = (inputs["input_ids"][0] == vlm.image_token_id).nonzero()[:, 0]
    attention = out.attentions[1][0, :, -1, image].mean(0)  # layer K-1 = 1, last query, (576,)
    expected = sorted(torch.topk(attention, 32).indices.tolist())
    got = vlm.generate([s], method="fastv", budget=32, max_new_tokens=1)[0]
    assert got["kept_indices"] == expected
