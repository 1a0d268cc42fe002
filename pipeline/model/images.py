"""Image decoding and conversion for model input: bytes or PIL in, RGB PIL out, or a clear error.

Rules (each tested):
- encoded bytes are opened with PIL; undecodable bytes -> ``ImageError``;
- modes other than RGB are converted: images with alpha (RGBA, LA, P with transparency) are
  composited on white (what the transformers processors do), L / CMYK / I;16 etc. -> RGB;
- tiny images (down to 1x1) are kept: the processor resizes them to the tower's input like any
  other image, which is the faithful answer to "what does the model see";
- images with more than ``MAX_PIXELS`` pixels are refused before decoding (error); images
  with a side above ``MAX_SIDE`` px are downscaled (aspect kept) before the processor, which would
  shrink them anyway, to bound CPU time and memory;
- zero-sized images -> ``ImageError``.
"""
from __future__ import annotations

import hashlib
import io

from PIL import Image

MAX_SIDE = 2016
MAX_PIXELS = 100_000_000


class ImageError(ValueError):
    """The sample's image cannot be used."""


def to_rgb(image: Image.Image) -> Image.Image:
    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise ImageError(f"image too large: {width}x{height} px exceeds {MAX_PIXELS} pixels")


def decode_image(image) -> Image.Image:
    """Return an RGB ``PIL.Image`` for ``image`` (encoded bytes or a PIL image)."""
    if image is None:
        raise ImageError("image is missing")
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise ImageError("image bytes are empty")
        try:
            with Image.open(io.BytesIO(data)) as opened:
                _check_pixels(*opened.size)
                opened.load()
                pil = opened.copy()
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(f"undecodable image bytes ({len(data)} bytes): {type(exc).__name__}") from None
    elif isinstance(image, Image.Image):
        pil = image
    else:
        raise ImageError(f"image must be encoded bytes or a PIL.Image, got {type(image).__name__}")
    width, height = pil.size
    if width < 1 or height < 1:
        raise ImageError(f"image has zero size {width}x{height}")
    _check_pixels(width, height)
    pil = to_rgb(pil)
    if max(width, height) > MAX_SIDE:
        scale = MAX_SIDE / max(width, height)
        pil = pil.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.BICUBIC)
    return pil


def image_key(image: Image.Image) -> str:
    """Identity of a decoded image within a batch: hash of its size and RGB pixels.

    Keyed on pixels (not on the source), so the same picture given as bytes in one row and as a
    PIL image in another is still encoded once.
    """
    return hashlib.sha1(repr(image.size).encode() + image.tobytes()).hexdigest()
