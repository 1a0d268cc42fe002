"""ToMe (Bolya et al., ICLR 2023) as published: bipartite soft matching with size-weighted merges and
proportional attention, batched.

Follows ``tome/merge.py`` (``bipartite_soft_matching`` + ``merge_wavg``), ``tome/patch/timm.py``
(``ToMeAttention``, ``ToMeBlock``) and ``tome/utils.py`` (``parse_r``) of the official code. The model
adapter applies them inside every vision encoder layer (``pipeline/model/tome.py``). Scores, softmaxes
and weighted sums are computed in float32; tokens come back in the input dtype, sizes in float32.
"""
from __future__ import annotations

import math

import torch


def tome_merge(x: torch.Tensor, metric: torch.Tensor, r: int, size: torch.Tensor | None = None,
               class_token: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge ``r`` tokens of ``x`` (one ToMe step between a layer's attention and its MLP).

    Args:
        x: (B, T, C) residual stream after the layer's attention (x + attn_out).
        metric: (B, T, c) that layer's keys averaged over heads.
        r: tokens to remove; at most ``(T - class_token) // 2`` are (r' = the smaller of the two).
        size: (B, T, 1) tokens each row stands for, None = all ones.
        class_token: token 0 is never merged (it stays first).

    Returns:
        x' (B, T - r', C) and size' (B, T - r', 1). Set A = even positions, set B = odd positions; the
        r' A-tokens whose best cosine match in B is highest (the CLS row scores -inf) merge into that
        B-token as a size-weighted mean. Order: the unmerged A-tokens (ascending when ``class_token``),
        then every B-token in order. r' <= 0 returns ``(x * size / size, size)``.
    """
    if x.dim() != 3 or metric.dim() != 3 or metric.shape[:2] != x.shape[:2]:
        raise ValueError(f"x must be (B, T, C) and metric (B, T, c), got {tuple(x.shape)} and {tuple(metric.shape)}")
    B, T, C = x.shape
    size = torch.ones(B, T, 1, device=x.device) if size is None else size.float()
    if size.shape != (B, T, 1):
        raise ValueError(f"size must be (B={B}, T={T}, 1), got {tuple(size.shape)}")
    r = min(r, (T - int(class_token)) // 2)
    if r <= 0:
        return (x.float() * size / size).to(x.dtype), size

    unit = metric.float()
    unit = unit / unit.norm(dim=-1, keepdim=True)
    scores = unit[:, ::2] @ unit[:, 1::2].transpose(1, 2)  # (B, |A|, |B|)
    if class_token:
        scores[:, 0, :] = -math.inf
    node_max, node_idx = scores.max(dim=-1)  # (B, |A|)
    edge_idx = torch.sort(node_max, dim=-1, descending=True, stable=True).indices[..., None]
    unmerged, merged = edge_idx[:, r:], edge_idx[:, :r]
    if class_token:
        unmerged = unmerged.sort(dim=1).values
    destination = node_idx[..., None].gather(1, merged)  # (B, r, 1)

    def merge_sum(values: torch.Tensor) -> torch.Tensor:
        src, dst = values[:, ::2], values[:, 1::2]
        width = values.shape[-1]
        kept = src.gather(1, unmerged.expand(-1, -1, width))
        moved = src.gather(1, merged.expand(-1, -1, width))
        dst = dst.scatter_reduce(1, destination.expand(-1, -1, width), moved, reduce="sum")
        return torch.cat([kept, dst], dim=1)

    weighted = merge_sum(x.float() * size)
    size = merge_sum(size)
    return (weighted / size).to(x.dtype), size


def tome_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention with ToMe's proportional attention (``ToMeAttention``).

    q, k, v: (B, H, T, hd) unscaled projections; size: (B, T, 1) or None.
    Returns out (B, T, H*hd) = ``softmax(q kᵀ · hd^-0.5 + log size) v`` with heads merged (before the
    output projection), in q's dtype, and metric (B, T, hd) = ``k.mean(1)`` (float32).
    """
    if q.dim() != 4 or q.shape != k.shape or k.shape != v.shape:
        raise ValueError(f"q, k, v must be (B, H, T, hd) of one shape, got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    B, H, T, hd = q.shape
    logits = (q.float() @ k.float().transpose(-1, -2)) * hd**-0.5  # (B, H, T, T)
    if size is not None:
        logits = logits + size.float().log()[:, None, None, :, 0]
    out = logits.softmax(dim=-1) @ v.float()  # (B, H, T, hd)
    return out.transpose(1, 2).reshape(B, T, H * hd).to(q.dtype), k.float().mean(dim=1)


def tome_parse_r(num_layers: int, r: int | tuple[int, float] | list[int]) -> list[int]:
    """A constant r, an ``(r, inflection)`` pair or an explicit list -> one r per layer (``parse_r``).

    A list shorter than ``num_layers`` is padded with zeros; ``(r, inflect)`` runs linearly from
    ``int(r * (1 - inflect))`` to ``2r`` minus that, truncated to ints (``(r, 0)`` = constant r,
    ``(r, -1)`` = the paper's decreasing schedule).
    """
    if isinstance(r, list):
        return list(r) + [0] * (num_layers - len(r))
    inflect = 0.0
    if isinstance(r, tuple):
        r, inflect = r
    low = int(r * (1.0 - inflect))
    high = 2 * r - low
    step = (high - low) / (num_layers - 1)
    return [int(low + step * i) for i in range(num_layers)]


def tome_schedule(num_layers: int, n_tokens: int, keep: int, class_token: bool = True) -> list[int]:
    """The r per layer that takes ``n_tokens`` (CLS included) down to exactly ``keep + class_token``.

    As constant as possible: layer l removes ``ceil(R / layers left)`` of the R tokens still to go,
    raised where the later layers could not remove the rest any more (a layer leaving t non-CLS
    tokens removes at most t, ToMe's 50% cap) and lowered to its own cap. At ``keep`` = 64 from 577
    over 23 layers: r = 23 in the first six layers, then 22 (512 tokens removed); at 16 the last two
    layers take 32 and 16. ValueError when the layers
    cannot reach ``keep`` (each removes at most half of its non-CLS tokens).
    """
    if keep < 1 or n_tokens < 1 or num_layers < 1:
        raise ValueError(f"num_layers, n_tokens and keep must be >= 1, got {num_layers}, {n_tokens}, {keep}")
    remaining = max(0, n_tokens - int(class_token) - keep)
    tokens, schedule = n_tokens, []
    for layer in range(num_layers):
        left = num_layers - layer
        later = keep * (2 ** (left - 1) - 1)  # the most the last left-1 layers can remove, ending at keep
        r = max(-(-remaining // left), remaining - later)
        r = min(r, (tokens - int(class_token)) // 2)
        schedule.append(r)
        remaining -= r
        tokens -= r
    if remaining:
        raise ValueError(f"{num_layers} layers cannot merge {n_tokens} tokens down to {keep} (+CLS): each layer "
                         "removes at most half of its tokens")
    return schedule
