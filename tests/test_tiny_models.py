"""The tiny LLaVA fixtures: offline reload, image-dependent generation (their byte-identical rebuild:
test_fixture_rebuild.py)."""
from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from pipeline.fixtures import models


@pytest.fixture(scope="module")
def built(fixtures_root):
    root = fixtures_root / "models"
    return root, {kind: root / kind for kind in ("llava15", "llava_next")}


def _circle(color, size=(400, 300)):
    im = Image.new("RGB", size, "white")
    ImageDraw.Draw(im).ellipse((40, 40, 200, 200), fill=color)
    return im


def _prompt(processor, text="What color is the circle?"):
    return processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}],
        add_generation_prompt=True,
    )


def test_chat_template_renders_llava15_prompt(built):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(built[1]["llava15"])
    assert _prompt(processor, "Is it red?") == models.SYSTEM + " USER: <image>\nIs it red? ASSISTANT:"


@pytest.mark.parametrize("text", ["请直接回答选项字母。图中是什么？", "Ünïcødé — 😀 ok?", "Why?"])
def test_tokenizer_round_trips_any_text(built, text):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built[1]["llava15"])
    ids = tok(text, add_special_tokens=False).input_ids
    assert tok.unk_token_id not in ids
    assert tok.decode(ids) == text
    assert tok.convert_tokens_to_ids("<image>") != tok.unk_token_id


@pytest.mark.slow
def test_llava15_reloads_offline_and_answers_depend_on_image(built, monkeypatch):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = built[1]["llava15"]
    processor = AutoProcessor.from_pretrained(path)
    assert type(processor.image_processor).__name__ == "CLIPImageProcessorPil"
    model = LlavaForConditionalGeneration.from_pretrained(path).eval()
    answers = []
    for color in ("red", "blue", "green"):
        inputs = processor(images=_circle(color), text=_prompt(processor), return_tensors="pt")
        assert int((inputs["input_ids"] == model.config.image_token_id).sum()) == 576
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:].tolist()
        assert len(set(new)) > 1
        answers.append(tuple(new))
    assert len(set(answers)) == 3


@pytest.mark.slow
def test_llava_next_token_count_depends_on_aspect_ratio(built, monkeypatch):
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = built[1]["llava_next"]
    processor = AutoProcessor.from_pretrained(path)
    model = LlavaNextForConditionalGeneration.from_pretrained(path).eval()
    counts = set()
    for size in ((300, 300), (600, 300), (300, 600), (640, 480)):
        inputs = processor(images=_circle("red", size), text=_prompt(processor), return_tensors="pt")
        counts.add(int((inputs["input_ids"] == model.config.image_token_id).sum()))
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=4, do_sample=False)
        assert out.shape[1] > inputs["input_ids"].shape[1]
    assert len(counts) == 4
