"""PruMerge and PruMerge+ (Shang et al., arXiv 2403.15388) as published, per image.

Follows ``token_prune_merge_advanced_plus`` (PruMerge+, what the official ``forward`` calls) and
``token_prune_merge_advanced`` (PruMerge) of ``llava/model/multimodal_encoder/clip_encoder.py`` in
42Shawn/LLaVA-PruMerge, one image at a time (the official code pools the outlier statistics over a
batch or fails on one), on the vision tower's output before the projector. The CLS attention and
the merge are computed in float32 (the outlier quartiles in float32 as ``np.percentile`` does on
float32 values); tokens come back in the dtype of ``features``. The official literal ``575`` is
``N - 1`` here (575 for CLIP-L/336).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

NEIGHBOURS = 32  # the official kNN size of the merge


def prumerge_plus(features: torch.Tensor, keys: torch.Tensor, cls_query: torch.Tensor, adaptive: bool = True,
                  ratio: float = 1 / 8) -> list[torch.Tensor]:
    """PruMerge+: outlier (or fixed-ratio) tokens plus spatially uniform ones, each merged with its
    32 key-nearest tokens, plus one token summing the rest.

    Args:
        features: (B, N, C) ``hidden_states[-2][:, 1:]`` (patches only, pre-projector).
        keys: (B, N+1, C) the LAST encoder layer's ``k_proj`` output, full width, bias included, CLS at 0.
        cls_query: (B, C) that layer's ``q_proj`` output at the CLS position (unscaled).
        adaptive: the official count: ``ratio`` = the share of this image's CLS attentions above
            Q3 + 1.5 IQR, top ``int(N * ratio)`` of them, then the positions ``0, s, 2s, … < N-1``
            (``s = int(int(1/ratio) / 3)``) not already chosen, ascending; an image with no outlier,
            where the official code divides by zero, counts as ratio 1/N (its top token and every
            ``int(N/3)``-th position). False (the official
            "for training" branch): top ``int(N * ratio)`` plus ``arange(int(step/2), N-1, step)``,
            ``step = int(1/ratio)``, duplicates kept; the two parts must have equal length (145 tokens
            at 1/8, 289 at 1/4, 73 at 1/16).
        ratio: the fixed ratio when ``adaptive`` is False.

    Returns:
        one (n_b + 1, C) tensor per image: each chosen token i (top-k order, then the spatial ones)
        becomes ``x_i + Σ_{j ∈ kNN32(i)} a_j x_j`` (a = CLS attention, unnormalised; kNN by key
        cosine among every other chosen entry and every complement token), then the extra token
        ``Σ_{j ∈ complement} a_j x_j``.
    """
    return _prumerge(features, keys, cls_query, adaptive, ratio, spatial=True)


def prumerge(features: torch.Tensor, keys: torch.Tensor, cls_query: torch.Tensor, adaptive: bool = True,
             ratio: float = 1 / 8) -> list[torch.Tensor]:
    """PruMerge: ``prumerge_plus`` without the spatial tokens (top ``int(N * ratio)`` by CLS
    attention, ``ratio`` adaptive per image or fixed), same merge and extra token."""
    return _prumerge(features, keys, cls_query, adaptive, ratio, spatial=False)


def prumerge_chosen(keys: torch.Tensor, cls_query: torch.Tensor, adaptive: bool = True, ratio: float = 1 / 8,
                    plus: bool = True) -> list[torch.Tensor]:
    """Per image, the patch indices (0 .. N-1) that PruMerge(+) turns into merged tokens, in the
    official order (top-k by CLS attention, then PruMerge+'s spatial ones; the fixed PruMerge+ branch
    may repeat an index). ``keys`` (B, N+1, C), ``cls_query`` (B, C) as in ``prumerge_plus``."""
    N = keys.shape[1] - 1
    return [_chosen(prumerge_cls_attention(keys[b : b + 1], cls_query[b : b + 1])[0], N, adaptive, ratio, plus)
            for b in range(keys.shape[0])]


def prumerge_cls_attention(keys: torch.Tensor, cls_query: torch.Tensor) -> torch.Tensor:
    """(B, N) CLS attention of PruMerge: one full-width head, ``softmax(q_cls · kᵀ · C^-0.5)`` over
    all N+1 keys, CLS column dropped (float32)."""
    logits = (keys.float() @ cls_query.float()[..., None])[..., 0] * keys.shape[-1] ** -0.5  # (B, N+1)
    return logits.softmax(dim=-1)[:, 1:]


def outlier_ratio(attn: torch.Tensor) -> float:
    """Share of the values of ``attn`` (n,) above Q3 + 1.5 IQR, quartiles as ``np.percentile``'s
    linear method computes them on float32 values (float32 arithmetic)."""
    values = torch.sort(attn.float().flatten()).values
    n = values.numel()

    def percentile(q: float) -> torch.Tensor:
        index = q * (n - 1)
        low = int(index)
        gamma = index - low
        a, b = values[low], values[min(low + 1, n - 1)]
        diff = b - a
        return b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma

    q1, q3 = percentile(0.25), percentile(0.75)
    upper = q3 + (q3 - q1) * 1.5
    return int((values > upper).sum()) / n


def _prumerge(features, keys, cls_query, adaptive, ratio, spatial) -> list[torch.Tensor]:
    B, N, C = _check(features, keys, cls_query, adaptive, ratio)
    out = []
    for b in range(B):  # per image: the count differs per image, and no kernel sees batch-mates
        cls_attn = prumerge_cls_attention(keys[b : b + 1], cls_query[b : b + 1])[0]  # (N,)
        unit_keys = F.normalize(keys[b, 1:].float(), p=2, dim=-1)  # (N, C)
        chosen = _chosen(cls_attn, N, adaptive, ratio, spatial)
        out.append(_merge(features[b], unit_keys, cls_attn, chosen))
    return out


def _chosen(attn: torch.Tensor, N: int, adaptive: bool, ratio: float, spatial: bool) -> torch.Tensor:
    """The chosen positions of one image, in the official order (may repeat in the fixed branch)."""
    if adaptive:
        ratio = outlier_ratio(attn)
        if ratio == 0 and spatial:  # the official code divides by zero here: one outlier instead
            ratio = 1 / N
    top = torch.sort(attn, descending=True, stable=True).indices[: int(N * ratio)]
    if not spatial:
        return top
    step = int(1 / ratio)
    if adaptive:
        stride = int(step / 3)
        if stride < 1:
            raise ValueError(f"adaptive ratio {ratio:.4f} > 1/3 gives a spatial stride of 0 (the official "
                             "arange fails here)")
        grid = torch.arange(0, N - 1, stride, device=attn.device)
        return torch.cat([top, grid[~torch.isin(grid, top)]])
    grid = torch.arange(int(step / 2), N - 1, step, device=attn.device)
    if grid.numel() != top.numel():
        raise ValueError(f"ratio {ratio} gives {top.numel()} top tokens but {grid.numel()} spatial ones; the "
                         "official fixed branch needs them equal (e.g. 1/8, 1/4, 1/16 at N=576)")
    return torch.cat([top, grid])


def _merge(x: torch.Tensor, unit_keys: torch.Tensor, attn: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """(len(chosen) + 1, C): each chosen entry plus the attention-weighted sum of its 32 nearest
    other entries (chosen entries, then the complement), then the weighted sum of the complement."""
    N = x.shape[0]
    n = chosen.numel()
    masked = torch.arange(N, device=x.device).scatter(0, chosen, 0)
    complement = torch.sort(masked).values[n:]  # the official complement_idx, quirk included
    order = torch.cat([chosen, complement])  # (N,) list positions -> token index
    if order.numel() - 1 < NEIGHBOURS:
        raise ValueError(f"PruMerge merges each token with its {NEIGHBOURS} nearest: needs N >= {NEIGHBOURS + 1}, "
                         f"got {N}")
    values = x.float()[order]  # (N, C)
    weights = attn[order]  # (N,)
    cosine = unit_keys[chosen] @ unit_keys[order].T  # (n, N)
    cosine[torch.arange(n, device=x.device), torch.arange(n, device=x.device)] = -torch.inf  # not itself
    nearest = torch.sort(cosine, dim=1, descending=True, stable=True).indices[:, :NEIGHBOURS]
    mix = torch.zeros_like(cosine).scatter_(1, nearest, weights[nearest])  # (n, N)
    merged = values[:n] + mix @ values
    extra = weights[n:] @ values[n:]
    return torch.cat([merged, extra[None]]).to(x.dtype)


def _check(features, keys, cls_query, adaptive, ratio) -> tuple[int, int, int]:
    if features.dim() != 3:
        raise ValueError(f"features must be (B, N, C), got shape {tuple(features.shape)}")
    B, N, C = features.shape
    if keys.dim() != 3 or keys.shape[:2] != (B, N + 1):
        raise ValueError(f"keys must be (B={B}, N+1={N + 1}, C), got shape {tuple(keys.shape)}")
    if cls_query.shape != (B, keys.shape[2]):
        raise ValueError(f"cls_query must be (B={B}, C={keys.shape[2]}), got shape {tuple(cls_query.shape)}")
    if not isinstance(adaptive, bool):
        raise ValueError(f"adaptive must be a bool, got {adaptive!r}")
    if not adaptive and not 0.0 < ratio <= 1.0:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    return B, N, C
