"""CPU half of the adapter: samples → checked, tokenized prompts and processed pixels, no weights.

``Preprocessor.prepare(samples)`` does everything that needs the processor but not the model: the
input checks (empty prompt or question → error), image decoding (``images.decode_image``), the
family's image processor (LLaVA-1.5: resize, center crop, normalize; LLaVA-NeXT: any-resolution
tiling) once per distinct image, in the model's dtype, chat rendering and tokenization, and the
token-id groups whose embedding means are icctp's noun centers. The pipeline runs it in its CPU
preprocess stage (``pipeline.stages.preprocess``); ``VLM.generate`` runs it itself.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import torch

from icctp import nouns
from pipeline.model import compat, families, images
from pipeline.model.visual import ImagePixels


@dataclass
class PreparedSample:
    """One sample after preprocessing; when ``error`` is set the sample is not run.

    image_key: its image in ``PreparedBatch.images``; text_ids: the rendered chat prompt (L ids)
    with exactly one ``<image>`` id, at ``image_pos``; seed: per-sample seed of the random method
    (crc32 of prompt and image key); phrases: noun-phrase strings; center_ids: icctp's center token
    groups (K lists of ids) and center_source ("nouns" | "instruction"), or center_error when they
    cannot be built (only icctp rows fail on it).
    """

    error: str | None = None
    image_key: str | None = None
    text_ids: list[int] = field(default_factory=list)
    image_pos: int = -1
    seed: int = 0
    phrases: list[str] = field(default_factory=list)
    center_ids: list[list[int]] | None = None
    center_source: str | None = None
    center_error: str | None = None

    @property
    def n_text(self) -> int | None:
        """Text tokens around the image (the ``<image>`` id not counted); None before tokenization."""
        return len(self.text_ids) - 1 if self.text_ids else None


@dataclass
class PreparedBatch:
    """Samples in input order and their distinct images (samples without error only), by key."""

    samples: list[PreparedSample]
    images: dict[str, ImagePixels]

    def subset(self, indices: list[int]) -> PreparedBatch:
        samples = [self.samples[i] for i in indices]
        keys = {s.image_key for s in samples if s.error is None}
        return PreparedBatch(samples, {k: v for k, v in self.images.items() if k in keys})


@dataclass
class Memo:
    """Work shared by several ``prepare`` calls on the same images: decoded bytes, processed pixels."""

    decoded: dict[bytes, tuple] = field(default_factory=dict)
    pixels: dict[str, ImagePixels] = field(default_factory=dict)


class Preprocessor:
    """The processor side of a LLaVA-1.5 / LLaVA-NeXT checkpoint: ``prepare`` samples for the model."""

    def __init__(self, processor, config, dtype: torch.dtype):
        self.processor, self.tokenizer, self.config, self.dtype = processor, processor.tokenizer, config, dtype
        self.family = families.family(config)
        self.image_token_id = compat.image_token_id(config)

    @classmethod
    def from_pretrained(cls, path: str, dtype: torch.dtype) -> Preprocessor:
        """Processor and config of a checkpoint (no weights); ``dtype``: the model's, for the pixels."""
        from transformers import AutoConfig, AutoProcessor

        path = str(path)
        return cls(AutoProcessor.from_pretrained(path, trust_remote_code=False),
                   AutoConfig.from_pretrained(path, trust_remote_code=False), dtype)

    def render(self, prompt: str) -> str:
        """The full text for a user turn ``prompt`` (chat template, one ``<image>``)."""
        conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(conversation, add_generation_prompt=True)

    def prepare(self, samples: list[dict], with_centers: bool, memo: Memo | None = None) -> PreparedBatch:
        """Check, decode, tokenize and process ``samples``; each distinct image is processed once.

        samples: dicts with ``image`` (bytes | PIL), ``prompt`` (user turn), ``question`` (for nouns;
        the prompt when the key is absent), ``noun_spans`` (the question's noun phrases as
        ``icctp.nouns.Phrase``s or ``{text, start, end}`` dicts, from ``pipeline.nlp.question_phrases``).
        ``with_centers``: build icctp's center groups (they need ``noun_spans``: a sample without
        them raises, it is a caller's mistake, not a data failure).
        """
        memo = memo or Memo()
        prepared, decoded = [], {}
        for sample in samples:
            row, image = self._prepare(sample, with_centers, memo)
            prepared.append(row)
            if row.error is None:
                decoded.setdefault(row.image_key, image)
        todo = [k for k in decoded if k not in memo.pixels]
        if todo:
            pixels = self.family.pixel_inputs(self.processor, self.config, [decoded[k] for k in todo], todo,
                                              self.dtype)
            memo.pixels.update(zip(todo, pixels))
        return PreparedBatch(prepared, {k: memo.pixels[k] for k in decoded})

    def _prepare(self, sample: dict, with_centers: bool, memo: Memo) -> tuple[PreparedSample, object]:
        """The prepared sample and its decoded RGB image (None on error)."""
        row = PreparedSample()
        try:
            prompt = sample.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError("empty prompt")
            question = sample["question"] if "question" in sample else prompt
            if not isinstance(question, str) or not question.strip():
                raise ValueError("empty question")
            image, row.image_key = _decoded(sample.get("image"), memo)
            row.text_ids = self.tokenizer(self.render(prompt)).input_ids
            where = [i for i, t in enumerate(row.text_ids) if t == self.image_token_id]
            if len(where) != 1:
                raise ValueError(f"rendered prompt must hold exactly one image token, found {len(where)}")
            row.image_pos = where[0]
            row.seed = zlib.crc32(f"{prompt}\0{row.image_key}".encode())
        except ValueError as exc:
            row.error = f"{type(exc).__name__}: {exc}"
            return row, None
        spans = sample.get("noun_spans")
        phrases = None if spans is None else nouns.as_phrases(spans)
        if phrases is not None:
            row.phrases = [p.text for p in phrases]
        if with_centers:
            if phrases is None:
                raise ValueError("icctp needs each question's noun_spans (pipeline.nlp.question_phrases)")
            try:
                row.center_ids, row.center_source = nouns.center_token_groups(question, phrases, self.tokenizer)
            except ValueError as exc:
                row.center_error = f"{type(exc).__name__}: {exc}"
        return row, image


def _decoded(image, memo: Memo) -> tuple:
    """(RGB image, pixel key) of ``image``; encoded bytes seen before in ``memo`` are not decoded again."""
    if not isinstance(image, (bytes, bytearray)):
        decoded = images.decode_image(image)
        return decoded, images.image_key(decoded)
    if image not in memo.decoded:
        decoded = images.decode_image(image)
        memo.decoded[image] = (decoded, images.image_key(decoded))
    return memo.decoded[image]
