"""The two feature spaces CIBA runs in: each gives, per question, the attribution of the image
(one raw capacity per visual token) and of the question (one per text piece, with its character span).

``SharedSpace`` (our extension, not M2IB): LLaVA's own space, where ICCTP clusters. The image
bottleneck sits on the projected visual tokens (n, d_llm), the text bottleneck on the language
model's input embeddings of the question (tokenized alone, no special tokens). No encoder follows
the bottleneck (no path inside the language model runs from text to image: image tokens come
first), so pooling is explicit: the bottlenecked side is mean-pooled; the clean question is its mean
embedding q; the clean image is its visual tokens weighted by ``softmax(cos(v_i, q) / temperature)``
(the question attends to the image, as the language model's attention reads it; ``temperature``
None: the plain mean, which in an image of mostly background drowns the asked object). The
relevance is the cosine of the two pooled vectors.

``ClipSpace`` (M2IB's setting): a ``CLIPModel`` whose vision tower is the LLaVA checkpoint's (e.g.
``openai/clip-vit-large-patch14-336`` for LLaVA-1.5) and its paired text encoder. The bottleneck
sits on the output of encoder block ``layer`` (0-based, ``hidden_states[layer + 1]``, every token,
CLS/SOT/EOT included, as the official code does); the blocks after it, the final norm, the pooling
(CLS, resp. the first EOT) and the projection run on the bottlenecked features, the other tower runs
once, clean. The vision tower's patch tokens 1..576 are LLaVA-1.5's 576 visual tokens, row-major;
the CLS token's capacity is dropped from the image attribution.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from icctp.ciba import BottleneckConfig, fit_bottleneck, masked_mean
from pipeline.model import compat


@dataclass
class Attribution:
    """Per question: ``image`` (n_visual,) and ``text`` (pieces,) raw capacities in nats (float32,
    CPU), ``pieces`` their character spans in the question, ``image_keep`` mean lambda per visual
    token, and the read-out pass's mean cosine on each side."""

    image: torch.Tensor
    image_keep: torch.Tensor
    image_relevance: float
    text: torch.Tensor
    pieces: list[tuple[int, int]]
    text_relevance: float


def question_pieces(tokenizer, question: str, special: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets of the question; ``special``: with the tokenizer's special tokens."""
    if not question or not question.strip():
        raise ValueError("empty question")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"a fast tokenizer (offset_mapping) is required, got {type(tokenizer).__name__}")
    enc = tokenizer(question, add_special_tokens=special, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def pad_rows(rows: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_i, d) tensors -> ((B, n_max, d) zero-padded, (B, n_max) bool mask)."""
    n = max(r.shape[0] for r in rows)
    out = rows[0].new_zeros(len(rows), n, rows[0].shape[1])
    mask = torch.zeros(len(rows), n, dtype=torch.bool, device=rows[0].device)
    for b, r in enumerate(rows):
        out[b, :r.shape[0]], mask[b, :r.shape[0]] = r, True
    return out, mask


def _mean_cosine(target: torch.Tensor, mask: torch.Tensor):
    """Relevance: cosine between the masked token mean of z (B, S, n, d) and ``target`` (B, d)."""
    def relevance(z: torch.Tensor) -> torch.Tensor:
        return F.cosine_similarity(masked_mean(z, mask[:, None]), target[:, None].to(z.dtype), dim=-1, eps=1e-6)
    return relevance


def side_seeds(seeds: list[int], side: int) -> list[int]:
    """Noise seeds of one side (0 image, 1 text) from the questions' seeds."""
    return [(int(s) * 2 + side) % 2**62 for s in seeds]


class SharedSpace:
    """LLaVA's input space: projected visual tokens vs the question's LM input embeddings."""

    name = "shared"

    def __init__(self, model, tokenizer, image: BottleneckConfig, text: BottleneckConfig,
                 temperature: float | None = 0.03):
        if temperature is not None and temperature <= 0:
            raise ValueError(f"temperature must be > 0 or None (mean pooling), got {temperature}")
        self.embed = compat.input_embeddings(model)
        self.tokenizer, self.image_config, self.text_config = tokenizer, image, text
        self.temperature = temperature

    def image_embedding(self, visual: torch.Tensor, mask: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Clean pooled image (B, d) of visual tokens (B, n, d) for question means ``query`` (B, d)."""
        if self.temperature is None:
            return masked_mean(visual, mask)
        sim = F.cosine_similarity(visual, query[:, None], dim=-1, eps=1e-6) / self.temperature  # (B, n)
        weights = sim.masked_fill(~mask, float("-inf")).softmax(-1)
        return (weights[..., None] * visual).sum(1)

    @torch.no_grad()
    def text_features(self, question: str) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        ids, offsets = question_pieces(self.tokenizer, question)
        return self.embed(torch.tensor(ids, device=self.embed.weight.device)), offsets  # (L, d)

    def attribute(self, questions: list[str], visuals: list[torch.Tensor], seeds: list[int]) -> list[Attribution]:
        """``visuals``: per question its visual tokens (n_i, d_llm) (the unpruned sequence)."""
        texts, offsets = zip(*(self.text_features(q) for q in questions))
        vis, vis_mask = pad_rows([v.detach().float() for v in visuals])
        txt, txt_mask = pad_rows([t.float() for t in texts])
        query = masked_mean(txt, txt_mask)
        image = fit_bottleneck(vis, vis_mask, _mean_cosine(query, vis_mask), side_seeds(seeds, 0), self.image_config)
        text = fit_bottleneck(txt, txt_mask, _mean_cosine(self.image_embedding(vis, vis_mask, query), txt_mask),
                              side_seeds(seeds, 1), self.text_config)
        return [Attribution(image.capacity[b, :v.shape[0]].float().cpu(), image.keep[b, :v.shape[0]].float().cpu(),
                            float(image.relevance[b]), text.capacity[b, :len(offsets[b])].float().cpu(),
                            list(offsets[b]), float(text.relevance[b]))
                for b, v in enumerate(visuals)]


def default_layer(num_layers: int) -> int:
    """Three quarters of the depth (M2IB's block 9 of 12; block 18 of CLIP-L's 24), 0-based."""
    return max(0, min(num_layers - 1, (3 * num_layers) // 4))


class ClipSpace:
    """A ``CLIPModel`` and its fast tokenizer; bottlenecks after vision block ``image_layer`` and
    text block ``text_layer`` (0-based; None: ``default_layer``)."""

    name = "clip"

    def __init__(self, model, tokenizer, image: BottleneckConfig, text: BottleneckConfig,
                 image_layer: int | None = None, text_layer: int | None = None):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.image_config, self.text_config = image, text
        vision, textual = model.vision_model.encoder.layers, model.text_model.encoder.layers
        self.image_layer = default_layer(len(vision)) if image_layer is None else image_layer
        self.text_layer = default_layer(len(textual)) if text_layer is None else text_layer
        for name, layer, layers in (("image_layer", self.image_layer, vision), ("text_layer", self.text_layer, textual)):
            if not 0 <= layer < len(layers):
                raise ValueError(f"{name} {layer} is not a block of a {len(layers)}-block encoder")
        config = model.config.vision_config
        self.n_patches = (config.image_size // config.patch_size) ** 2
        self.eos_id = model.config.text_config.eos_token_id
        self.context = model.config.text_config.max_position_embeddings
        self.dtype = model.visual_projection.weight.dtype

    # -- vision -------------------------------------------------------------------------------
    @torch.no_grad()
    def vision_prefix(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels (B, 3, S, S) -> output of block ``image_layer`` (B, 1 + n_patches, d)."""
        vm = self.model.vision_model
        h = vm.pre_layrnorm(vm.embeddings(pixels.to(self.dtype)))
        for layer in vm.encoder.layers[: self.image_layer + 1]:
            h = layer(h, None)
        return h

    def vision_tail(self, z: torch.Tensor) -> torch.Tensor:
        """Bottlenecked block output (..., 1 + n, d) -> projected image embedding (..., P)."""
        vm, lead = self.model.vision_model, z.shape[:-2]
        h = z.reshape(-1, *z.shape[-2:]).to(self.dtype)
        for layer in vm.encoder.layers[self.image_layer + 1:]:
            h = layer(h, None)
        return self.model.visual_projection(vm.post_layernorm(h[:, 0])).float().view(*lead, -1)

    # -- text ---------------------------------------------------------------------------------
    def tokenize(self, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[list[tuple[int, int]]]]:
        """(ids (B, L) padded with EOT, lengths (B,), offsets per question incl. SOT/EOT)."""
        encoded = [question_pieces(self.tokenizer, q, special=True) for q in questions]
        for q, (ids, _) in zip(questions, encoded):
            if len(ids) > self.context:
                raise ValueError(f"question of {len(ids)} CLIP tokens exceeds the {self.context}-token context: {q!r}")
        device = self.model.visual_projection.weight.device
        length = max(len(ids) for ids, _ in encoded)
        ids = torch.full((len(encoded), length), self.eos_id, dtype=torch.long, device=device)
        for b, (row, _) in enumerate(encoded):
            ids[b, :len(row)] = torch.tensor(row, device=device)
        lengths = torch.tensor([len(row) for row, _ in encoded], device=device)
        return ids, lengths, [offsets for _, offsets in encoded]

    def text_mask(self, lengths: torch.Tensor, length: int) -> torch.Tensor:
        """(B, 1, L, L) additive mask: causal, and no key past a question's own tokens."""
        pos = torch.arange(length, device=lengths.device)
        allowed = (pos[None, :] <= pos[:, None])[None] & (pos[None, None, :] < lengths[:, None, None])
        zero = torch.zeros((), dtype=self.dtype, device=lengths.device)
        return torch.where(allowed, zero, torch.finfo(self.dtype).min)[:, None]

    def eot_positions(self, ids: torch.Tensor) -> torch.Tensor:
        """Where the text model pools: the first EOT (legacy configs with eos id 2: the largest id)."""
        if self.eos_id == 2:
            return ids.argmax(-1)
        return (ids == self.eos_id).int().argmax(-1)

    @torch.no_grad()
    def text_prefix(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tm = self.model.text_model
        h = tm.embeddings(input_ids=ids)
        for layer in tm.encoder.layers[: self.text_layer + 1]:
            h = layer(h, mask)
        return h

    def text_tail(self, z: torch.Tensor, mask: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        """Bottlenecked block output (B, S, L, d) -> projected text embedding (B, S, P)."""
        tm, (batch, samples) = self.model.text_model, z.shape[:2]
        h = z.reshape(batch * samples, *z.shape[2:]).to(self.dtype)
        mask = mask.repeat_interleave(samples, 0)
        for layer in tm.encoder.layers[self.text_layer + 1:]:
            h = layer(h, mask)
        pooled = tm.final_layer_norm(h)[torch.arange(h.shape[0], device=h.device), eot.repeat_interleave(samples)]
        return self.model.text_projection(pooled).float().view(batch, samples, -1)

    def attribute(self, questions: list[str], pixels: list[torch.Tensor], seeds: list[int]) -> list[Attribution]:
        """``pixels``: per question its image (1, 3, S, S), the LLaVA-1.5 processor's output."""
        if any(p.shape[0] != 1 for p in pixels):
            raise ValueError("the CLIP space takes one 336-px view per image (LLaVA-1.5), not anyres crops")
        ids, lengths, offsets = self.tokenize(questions)
        mask = self.text_mask(lengths, ids.shape[1])
        eot = self.eot_positions(ids)
        device = ids.device
        vision = self.vision_prefix(torch.cat(pixels).to(device))  # (B, 1 + n, d)
        text = self.text_prefix(ids, mask)  # (B, L, d)
        with torch.no_grad():
            image_emb = self.vision_tail(vision[:, None])[:, 0]  # (B, P)
            text_emb = self.text_tail(text[:, None], mask, eot)[:, 0]  # (B, P)

        def image_relevance(z):
            return F.cosine_similarity(self.vision_tail(z), text_emb[:, None], dim=-1, eps=1e-6)

        def text_relevance(z):
            return F.cosine_similarity(self.text_tail(z, mask, eot), image_emb[:, None], dim=-1, eps=1e-6)

        full = torch.ones(vision.shape[:2], dtype=torch.bool, device=device)
        text_valid = torch.arange(ids.shape[1], device=device)[None] < lengths[:, None]
        image = fit_bottleneck(vision, full, image_relevance, side_seeds(seeds, 0), self.image_config)
        words = fit_bottleneck(text, text_valid, text_relevance, side_seeds(seeds, 1), self.text_config)
        out = []
        for b, spans in enumerate(offsets):
            pieces = [i for i, (s, e) in enumerate(spans) if s < e]  # SOT/EOT carry no characters
            out.append(Attribution(image.capacity[b, 1:].float().cpu(), image.keep[b, 1:].float().cpu(),
                                   float(image.relevance[b]), words.capacity[b, pieces].float().cpu(),
                                   [spans[i] for i in pieces], float(words.relevance[b])))
        return out
