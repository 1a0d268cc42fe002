"""Bad samples: decoded or converted where that is right, an error row otherwise, never a failed batch."""
from __future__ import annotations

import io

import pytest
from PIL import Image
from test_model_llava import drawing, png, sample

from pipeline.model import images


def encoded(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def test_rgba_is_composited_on_white():
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    im.putpixel((0, 0), (0, 0, 255, 255))
    out = images.decode_image(encoded(im))
    assert out.mode == "RGB"
    assert out.getpixel((1, 1)) == (255, 255, 255)
    assert out.getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("mode,fmt", [("L", "PNG"), ("CMYK", "JPEG"), ("P", "PNG"), ("I;16", "PNG"), ("LA", "PNG")])
def test_other_modes_become_rgb(mode, fmt):
    out = images.decode_image(encoded(Image.new(mode, (10, 7)), fmt))
    assert out.mode == "RGB" and out.size == (10, 7)


def test_huge_image_is_downscaled_and_bombs_refused(monkeypatch):
    out = images.decode_image(Image.new("RGB", (6000, 4000), "red"))
    assert out.size == (images.MAX_SIDE, images.MAX_SIDE * 2 // 3)
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 99)
    for raw in (encoded(Image.new("1", (100, 100))), Image.new("RGB", (100, 100))):
        with pytest.raises(images.ImageError, match="too large: 100x100"):
            images.decode_image(raw)
    assert images.decode_image(Image.new("RGB", (99, 100))).size == (99, 100)


@pytest.mark.parametrize("raw,match", [(b"not an image", "undecodable"), (b"", "empty"), (None, "missing"),
                                       ("a string", "bytes or a PIL")])
def test_unusable_images_raise(raw, match):
    with pytest.raises(images.ImageError, match=match):
        images.decode_image(raw)


def test_same_picture_as_bytes_or_pil_has_one_key():
    im = drawing("red", (200, 200))
    assert images.image_key(images.decode_image(png(im))) == images.image_key(images.decode_image(im))
    other = drawing("blue", (200, 200))
    assert images.image_key(images.decode_image(im)) != images.image_key(images.decode_image(other))


@pytest.fixture(scope="module")
def vlm(llava15_vlm):
    return llava15_vlm


@pytest.mark.slow
def test_bad_rows_never_fail_the_batch(vlm):
    good = [sample(0), sample(1)]
    cmyk = Image.new("CMYK", (300, 200), (0, 255, 255, 0))
    bad = [
        dict(sample(2), image=b"\x89PNG\r\n garbage"),
        dict(sample(3), prompt="", question=""),
        dict(sample(4), question="   "),
        dict(sample(4), question=None),
        dict(sample(5), image=encoded(Image.new("RGB", (1, 1), "red"))),
        dict(sample(5), image=encoded(cmyk, "JPEG")),
        dict(sample(5), image=encoded(Image.new("RGBA", (300, 200), (0, 0, 255, 128)))),
        dict(sample(5), image=encoded(Image.new("L", (300, 200), 128))),
        dict(sample(5), image=encoded(Image.new("RGB", (6000, 4000), "green"), "JPEG")),
    ]
    out = vlm.generate([good[0]] + bad + [good[1]], method="cls", budget=16, max_new_tokens=3)
    alone = vlm.generate(good, method="cls", budget=16, max_new_tokens=3)
    assert [out[0]["prediction"], out[-1]["prediction"]] == [a["prediction"] for a in alone]
    errors = [o["error"] for o in out[1:-1]]
    assert "undecodable" in errors[0] and "empty prompt" in errors[1]
    assert "empty question" in errors[2] and "empty question" in errors[3]
    assert all(o["prediction"] is None and o["n_kept"] is None for o in out[1:5])
    converted = out[5:-1]
    assert all(o["error"] is None and o["n_kept"] == 16 and isinstance(o["prediction"], str) for o in converted)


@pytest.mark.slow
def test_all_bad_batch_returns_error_rows(vlm):
    out = vlm.generate([dict(sample(0), image=b"xx"), dict(sample(1), prompt=" ")], method="icctp", budget=8)
    assert [o["prediction"] for o in out] == [None, None]
    assert all(o["error"] for o in out)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llava15", "llava_next"])
def test_processed_pixels_equal_the_processors_own_tensors(kind, fixtures_root):
    """``processed_pixels`` (per-image arrays stacked by torch) gives the processor's ``return_tensors="pt"``
    output bit for bit, on images of several sizes (LLaVA-NeXT: different grid counts, padded)."""
    import numpy as np
    import torch
    from transformers import AutoProcessor

    from pipeline.fixtures import tiny_model_path
    from pipeline.model.visual import processed_pixels

    processor = AutoProcessor.from_pretrained(str(tiny_model_path(kind))).image_processor
    rng = np.random.default_rng(0)
    pictures = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
                [(336, 336), (200, 500), (480, 300), (17, 23)]]
    stock = processor(pictures, return_tensors="pt")
    pixels, rest = processed_pixels(processor, pictures)
    assert pixels.dtype == stock["pixel_values"].dtype and torch.equal(pixels, stock["pixel_values"])
    assert sorted(rest) == sorted(k for k in stock if k != "pixel_values")
