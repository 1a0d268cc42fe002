"""In-LLM pruners: what FastV, DART and SparseVLM need at their pruning layers, and how budgets map to counts.

A pruner tells the model adapter where it prunes and what to collect there; the adapter runs the
decoder layer by layer, collects exactly that, and applies the returned keep mask:

- ``layers``: the decoder layers whose **output** is pruned (FastV and DART at K: layer K-1;
  SparseVLM: its stages 2, 6, 15); the next layers run on the kept tokens.
- ``needs`` (a subset of :data:`NEEDS`): ``attention_last`` (the layer's attention probabilities
  of the last real query, (B, H, 1, L)), ``attention_text`` (those of every query after the visual
  span, (B, H, T, L) for the last T positions), ``keys`` (the layer's keys after RoPE, its KV
  cache, (B, H_kv, L, hd)), ``final_norm`` (the LM's final norm weight and eps), ``embeds`` (the
  layer-0 input, given once to :meth:`begin`). The layer's output ``hidden`` (B, L, D) is always
  given.
- ``positions``: ``"original"`` (kept tokens keep their position ids: FastV, DART) or ``"repack"``
  (positions count the kept tokens contiguously: SparseVLM).

``prune`` receives a :class:`LayerInputs` for samples that share one visual count and returns a
:class:`Pruned`: the keep mask and, optionally, merged tokens that the adapter places right after
the sample's kept visual tokens (SparseVLM's recycled clusters).

Budgets (visual tokens per 576, scaled to the image's count with ``icctp.budget.scaled_budget``)
mean, by ``budget_mode``: ``kept``, the visual tokens after the last pruning layer; ``equivalent``,
their average over all decoder layers (the convention of the SparseVLM and VisionZip tables). The
factories raise ``ValueError`` when a budget cannot be met (e.g. an equivalent average below what
the unpruned first layers already cost).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from icctp.budget import scaled_budget
from icctp.llm_pruning import (
    SPARSEVLM_SCHEDULE,
    dart_keep,
    fastv_equivalent_R,
    fastv_keep,
    sparsevlm_raters,
    sparsevlm_recycle,
    sparsevlm_select,
)

NEEDS = frozenset({"attention_last", "attention_text", "keys", "final_norm", "embeds"})
BUDGET_MODES = ("kept", "equivalent")


@dataclass
class LayerInputs:
    """What the adapter collected at one pruning layer, for samples sharing ``n_image``.

    layer: the decoder layer whose output this is; mask: (B, L) 1 on real tokens (left-padded);
    image_start: (B,) int64 padded position of the first visual token; hidden: (B, L, D) the
    layer's output; attention: (B, H, Q, L) probabilities of the last Q queries (Q = 1 for
    ``attention_last``) or None; keys: (B, H_kv, L, hd) or None; norm_weight: (D,) or None.
    """

    layer: int
    mask: torch.Tensor
    image_start: torch.Tensor
    n_image: int
    hidden: torch.Tensor
    attention: torch.Tensor | None = None
    keys: torch.Tensor | None = None
    norm_weight: torch.Tensor | None = None
    norm_eps: float = 1e-5
    rows: torch.Tensor | None = None  # (B,) sample indices in the prefill batch


@dataclass
class Pruned:
    """keep: (B, L) bool keep mask; merged: per sample, (c, D) tokens placed after its kept visual
    tokens, or None (no merged tokens at all)."""

    keep: torch.Tensor
    merged: list[torch.Tensor | None] | None = None


def _check_mode(budget_mode: str) -> None:
    if budget_mode not in BUDGET_MODES:
        raise ValueError(f"budget_mode must be one of {', '.join(BUDGET_MODES)}, got {budget_mode!r}")


def _check_layer(K: int, n_layers: int, name: str) -> None:
    if not 1 <= K < n_layers:
        raise ValueError(f"{name} layer K={K} must be in [1, {n_layers - 1}] for a {n_layers}-layer language model")


class FastVPruner:
    """FastV at layer K: the top-R image tokens by layer K-1's last-query attention (``fastv_keep``).

    R = the scaled budget (``kept``) or ``fastv_equivalent_R`` of it (``equivalent``).
    """

    needs = frozenset({"attention_last"})
    positions = "original"

    def __init__(self, budget: int, n_layers: int, K: int = 2, budget_mode: str = "kept"):
        _check_mode(budget_mode)
        _check_layer(K, n_layers, "FastV")
        self.budget, self.n_layers, self.K, self.mode = budget, n_layers, K, budget_mode
        self.layers = (K - 1,)

    def count(self, n_image: int) -> int:
        """Image tokens kept after layer K for an image of ``n_image`` visual tokens."""
        target = scaled_budget(self.budget, n_image)
        if self.mode == "kept":
            return min(target, n_image)
        return fastv_equivalent_R(min(target, n_image), self.n_layers, self.K, n_image)

    def check(self, n_image: int) -> None:
        """``ValueError`` when the budget cannot be met on an image of ``n_image`` tokens."""
        self.count(n_image)

    def begin(self, embeds, mask, image_start, n_image) -> None:
        for n in {int(n) for n in n_image}:
            self.check(n)

    def prune(self, x: LayerInputs) -> Pruned:
        return Pruned(fastv_keep(x.attention[:, :, -1], x.image_start, x.n_image, self.count(x.n_image), x.mask))


class DARTPruner:
    """DART at layer K: key-norm pivots of layer K-1 and duplication by cosine (``dart_keep``).

    ``kept``: the budget is the official ``max_num_trunction`` (64 keeps 68 image tokens);
    ``equivalent``: ``max_num_trunction = R - pivot_image`` with R = ``fastv_equivalent_R`` of the
    budget, so at most R image tokens stay.
    """

    needs = frozenset({"keys", "final_norm"})
    positions = "original"

    def __init__(self, budget: int, n_layers: int, K: int = 2, pivot_image: int = 4, pivot_text: int = 4,
                 budget_mode: str = "kept"):
        _check_mode(budget_mode)
        _check_layer(K, n_layers, "DART")
        self.budget, self.n_layers, self.K, self.mode = budget, n_layers, K, budget_mode
        self.pivot_image, self.pivot_text = pivot_image, pivot_text
        self.layers = (K - 1,)

    def truncation(self, n_image: int) -> int:
        """The official ``max_num_trunction`` for an image of ``n_image`` visual tokens."""
        target = scaled_budget(self.budget, n_image)
        if self.mode == "kept":
            return target
        return max(0, fastv_equivalent_R(min(target, n_image), self.n_layers, self.K, n_image) - self.pivot_image)

    def check(self, n_image: int) -> None:
        """``ValueError`` when the budget cannot be met on an image of ``n_image`` tokens."""
        if self.pivot_image >= n_image:
            raise ValueError(f"DART needs more than pivot_image={self.pivot_image} visual tokens, got {n_image}")
        self.truncation(n_image)

    def begin(self, embeds, mask, image_start, n_image) -> None:
        for n in {int(n) for n in n_image}:
            self.check(n)

    def prune(self, x: LayerInputs) -> Pruned:
        keep = dart_keep(x.keys, x.hidden, x.norm_weight, x.image_start, x.n_image, self.truncation(x.n_image),
                         x.mask, self.pivot_image, self.pivot_text, x.norm_eps)
        return Pruned(keep)


def sparsevlm_schedule(budget: int, n_image: int, n_layers: int, layers: tuple[int, ...],
                       budget_mode: str) -> dict[int, int]:
    """Visual tokens SparseVLM keeps at each of ``layers`` (before recycling adds its clusters).

    With the official layers (2, 6, 15) on 576 tokens, ``equivalent`` budgets 64/128/192 use
    :data:`SPARSEVLM_SCHEDULE`. Any other case (ours, not the paper's) scales the 64 row's shape
    (66 : 30 : 17, its first ``len(layers)`` entries): ``kept`` so the last stage keeps ``budget``;
    ``equivalent`` so that the average over the layers, recycled clusters left out, is ``budget``
    (the layers up to the first stage see all ``n_image``). ``ValueError`` when unreachable.
    """
    _check_mode(budget_mode)
    if not layers or list(layers) != sorted(set(layers)) or layers[0] < 0 or layers[-1] >= n_layers - 1:
        raise ValueError(f"SparseVLM layers {list(layers)} must be increasing and in [0, {n_layers - 2}] "
                         f"for a {n_layers}-layer language model")
    if budget_mode == "equivalent" and tuple(layers) == (2, 6, 15) and n_image == 576 and budget in SPARSEVLM_SCHEDULE:
        return dict(SPARSEVLM_SCHEDULE[budget])
    shape = [66, 30, 17, 17][: len(layers)] + [17] * max(0, len(layers) - 4)
    if budget_mode == "kept":
        scale = budget / shape[-1]
    else:
        spans = [b - a for a, b in zip(layers, [*layers[1:], n_layers])]  # layers run on each stage's tokens
        scale = (n_layers * budget - (layers[0] + 1) * n_image) / sum(s * r for s, r in zip(spans, shape))
    counts = [max(1, min(n_image - 1, round(scale * r))) for r in shape]
    if scale <= 0:
        raise ValueError(f"an average of {budget} visual tokens over {n_layers} layers is unreachable when "
                         f"layers 0..{layers[0]} see all {n_image}")
    return dict(zip(layers, counts))


class SparseVLMPruner:
    """SparseVLM v1.5: text raters from the layer-0 input, attention-guided selection and recycling
    at each stage layer, positions re-packed (``sparsevlm_raters/select/recycle``)."""

    needs = frozenset({"attention_text", "embeds"})
    positions = "repack"

    def __init__(self, budget: int, n_layers: int, layers: tuple[int, ...] | list[int] = (2, 6, 15),
                 budget_mode: str = "equivalent"):
        self.budget, self.n_layers, self.mode = budget, n_layers, budget_mode
        self.layers = tuple(layers)
        sparsevlm_schedule(min(budget, 575), 576, n_layers, self.layers, "kept")  # checks the layers
        _check_mode(budget_mode)
        self.raters: torch.Tensor | None = None
        self.schedules: list[dict[int, int] | None] = []

    def check(self, n_image: int) -> None:
        """``ValueError`` when the budget cannot be met on an image of ``n_image`` tokens."""
        self.schedule(n_image)

    def schedule(self, n_image: int) -> dict[int, int] | None:
        """Kept counts per stage layer for an image of ``n_image`` tokens; None keeps them all."""
        target = scaled_budget(self.budget, n_image)
        if target >= n_image:
            return None
        return sparsevlm_schedule(target, n_image, self.n_layers, self.layers, self.mode)

    def begin(self, embeds, mask, image_start, n_image) -> None:
        """Schedules and raters once per prefill; raters come from the layer-0 input and are kept as
        positions relative to each sample's text start."""
        batch, length, _ = embeds.shape
        n_image = [int(n) for n in n_image]
        self.schedules = [self.schedule(n) for n in n_image]
        text_len = max(length - int(s) - n for s, n in zip(image_start, n_image))
        self.raters = torch.zeros(batch, text_len, dtype=torch.bool, device=embeds.device)
        for b in range(batch):
            start, n = int(image_start[b]), n_image[b]
            text = embeds[b, start + n:]
            self.raters[b, : text.shape[0]] = sparsevlm_raters(embeds[b:b + 1, start:start + n], text[None])[0]

    def prune(self, x: LayerInputs) -> Pruned:
        batch, length = x.mask.shape
        keep = x.mask.bool().clone()
        merged: list[torch.Tensor | None] = [None] * batch
        queries = x.attention.shape[2]
        image = x.image_start[:, None] + torch.arange(x.n_image, device=keep.device)  # (B, V)
        groups: dict[int, list[int]] = {}
        for b in range(batch):
            schedule = self.schedules[int(x.rows[b])]
            if schedule is not None:
                groups.setdefault(schedule[x.layer], []).append(b)
        for count, members in groups.items():
            idx = torch.tensor(members, device=keep.device)
            rows = torch.zeros(len(members), queries, dtype=torch.bool, device=keep.device)
            for j, b in enumerate(members):
                n_text = length - int(x.image_start[b]) - x.n_image
                rows[j, queries - n_text:] = self.raters[int(x.rows[b]), :n_text]
            cols = image[idx][:, None, None].expand(-1, x.attention.shape[1], queries, -1)
            attn = x.attention[idx].gather(3, cols)  # (G, H, Q, V)
            keep_vis, relation = sparsevlm_select(attn, rows, 0, x.layer, {0: {x.layer: count}})
            hidden_vis = x.hidden[idx].gather(1, image[idx][..., None].expand(-1, -1, x.hidden.shape[-1]))
            tokens = sparsevlm_recycle(hidden_vis, relation, keep_vis)
            n_keep = int(keep_vis[0].sum())
            for j, b in enumerate(members):
                keep[b, image[b]] = keep_vis[j]
                merged[b] = tokens[j, n_keep:]
        return Pruned(keep, merged)
