"""ICCTP token selection (paper Eqs. 5-13, Algorithm 1), batched over images and clusters.

Pure tensors in, sorted kept indices out. The number of torch operations executed does not depend
on the batch size B or the number of centers K: per-cluster top-k is one pair of stable sorts on
(cluster id, score) plus ranks from cumulative cluster sizes, and the per-cluster budgets come from
`icctp.budget.exact_allocation` (closed-form water-filling). Scores are computed in float32 whatever
the input dtype; ties always go to the lower token index.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from icctp.budget import exact_allocation

ALLOCATIONS = ("exact", "paper")
DOT_ROWS = 16  # tokens per chunk of the token-center dot products


def icctp_select(
    tokens: torch.Tensor,
    cls_attn: torch.Tensor,
    centers: torch.Tensor,
    center_mask: torch.Tensor,
    budget: int,
    rho_g: float = 0.6,
    alpha: float = 0.3,
    allocation: str = "exact",
    rho_c: float | None = None,
    return_clusters: bool = False,
):
    """Select visual tokens with ICCTP: global preselection, noun-center clustering, per-cluster top-k.

    Args:
        tokens: (B, n, d) projected visual tokens (LLM space), float32/bfloat16/float16.
        cls_attn: (B, n) CLS->patch attention of the vision tower, averaged over heads.
        centers: (B, K, d) noun-phrase centers in the LLM embedding space (padded along K).
        center_mask: (B, K) bool, True for real centers; every sample needs at least one.
        budget: visual tokens to keep per image, n_a >= 1. budget >= n keeps all n tokens.
        rho_g: global keep ratio in (0, 1): k_g = floor(rho_g * n_a) top-CLS tokens kept first.
        alpha: weight of cos(v_i, c_j) against the min-max normalised CLS attention, in [0, 1].
        allocation: "exact" keeps exactly min(budget, n) tokens; the remainder r = n_a - k_g is split
            over the non-empty clusters by `icctp.budget.exact_allocation` (proportional to size, at
            least 1 per cluster while r allows, otherwise 1 to each of the r clusters whose best token
            scores highest). "paper" is Algorithm 1 line 17: k_j = max(1, floor(rho_c * |C_j|)),
            so the kept count may differ from the budget.
        rho_c: cluster keep ratio in (0, 1] for "paper"; None derives (n_a - k_g) / |R|.
        return_clusters: also return, per sample, the cluster (center index) of each kept token,
            -1 for globally preselected tokens.

    Returns:
        kept: list of B int64 tensors of sorted token indices; with `return_clusters`,
        `(kept, clusters)` where `clusters[b]` is an int64 tensor aligned with `kept[b]`.
    """
    B, n, K = _check_icctp_inputs(tokens, cls_attn, centers, center_mask, budget, rho_g, alpha, allocation, rho_c)
    device = tokens.device
    if budget >= n:
        allocation = "exact"
    n_a = min(budget, n)
    k_g = math.floor(rho_g * n_a)
    positions = torch.arange(n, device=device).expand(B, n)

    # Step 1, global token preselection: top-k_g CLS attention (ties: lower index).
    attn = cls_attn.float()  # (B, n)
    attn_order = torch.sort(attn, dim=1, descending=True, stable=True).indices
    is_global = torch.zeros(B, n, dtype=torch.bool, device=device).scatter_(1, attn_order[:, :k_g], True)

    # Step 2, clustering: each token to its most cosine-similar real center (ties: lower center index).
    flat = tokens.float()  # (B, n, d); no copy for float32 input
    token_norm = torch.linalg.vector_norm(flat, dim=-1, keepdim=True).clamp(min=1e-12)  # (B, n, 1)
    unit_centers = F.normalize(centers.float(), dim=-1)  # (B, K, d)
    cos = _dot_with_centers(flat, unit_centers) / token_norm  # (B, n, K)
    cos = cos.masked_fill(~center_mask[:, None, :], -math.inf)
    assign = cos.argmax(dim=-1)  # (B, n)
    cos_to_center = cos.gather(2, assign[..., None]).squeeze(-1)  # (B, n)

    # Step 3, score s_i = alpha * cos + (1 - alpha) * min-max(a) over the image's n tokens.
    a_min = attn.amin(dim=1, keepdim=True)
    a_span = attn.amax(dim=1, keepdim=True) - a_min
    attn_norm = torch.where(a_span > 0, (attn - a_min) / a_span.clamp(min=torch.finfo(torch.float32).tiny), 0.0)
    score = alpha * cos_to_center + (1.0 - alpha) * attn_norm  # (B, n) float32

    # Rank inside each cluster: sort by score (desc, stable), then by cluster label (stable).
    label = torch.where(is_global, K, assign)  # (B, n); K = bucket of the preselected tokens
    score_order = torch.sort(score, dim=1, descending=True, stable=True).indices
    by_label = torch.sort(label.gather(1, score_order), dim=1, stable=True).indices
    token_order = score_order.gather(1, by_label)  # (B, n) tokens by (label, -score, index)
    sizes = torch.zeros(B, K + 1, dtype=torch.long, device=device).scatter_add_(1, label, torch.ones_like(label))
    starts = sizes.cumsum(1) - sizes  # (B, K + 1) first sorted position of each label
    rank_sorted = positions - starts.gather(1, label.gather(1, token_order))
    rank = torch.empty_like(rank_sorted).scatter_(1, token_order, rank_sorted)  # (B, n)

    cluster_sizes = sizes[:, :K]  # (B, K)
    if allocation == "exact":
        score_rank = torch.empty_like(score_order).scatter_(1, score_order, positions)
        top_token = token_order.gather(1, starts[:, :K].clamp(max=n - 1))  # best token of each cluster
        k = exact_allocation(cluster_sizes, n_a - k_g, score_rank.gather(1, top_token))
    else:
        ratio = (n_a - k_g) / (n - k_g) if rho_c is None else rho_c
        k = torch.floor(ratio * cluster_sizes.double()).long().clamp(min=1)
        k = torch.where(cluster_sizes > 0, k, 0)
    k_per_label = torch.cat([k, torch.zeros(B, 1, dtype=torch.long, device=device)], dim=1)
    keep = is_global | (rank < k_per_label.gather(1, label))  # (B, n)

    counts = keep.sum(1).tolist()
    kept = list(keep.nonzero()[:, 1].split(counts))
    if not return_clusters:
        return kept
    cluster_of = torch.where(is_global, -1, assign)[keep]
    return kept, list(cluster_of.split(counts))


def _dot_with_centers(flat: torch.Tensor, centers: torch.Tensor, rows: int = DOT_ROWS) -> torch.Tensor:
    """(B, n, K) dot products of tokens (B, n, d) with centers (B, K, d), float32.

    Each value is one elementwise product summed over d, so identical tokens get bitwise identical
    values and their ties break by index as documented. A batched matmul does not promise that:
    BLAS kernels may sum a row in a different order depending on its position in the tile (seen
    on x86 CPUs for both float32 and float64). Chunks of ``rows`` tokens bound the temporary
    (B, rows, K, d) product.
    """
    B, n, _ = flat.shape
    out = flat.new_empty(B, n, centers.shape[1])
    for start in range(0, n, rows):
        out[:, start:start + rows] = (flat[:, start:start + rows, None, :] * centers[:, None]).sum(-1)
    return out


def check_selection_inputs(tokens: torch.Tensor, cls_attn: torch.Tensor, budget: int) -> tuple[int, int]:
    """Validate the inputs shared by every selection method; return (B, n).

    tokens: (B, n, d) floating, finite; cls_attn: (B, n) floating, finite; budget: int >= 1.
    """
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise TypeError(f"budget must be an int, got {type(budget).__name__}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3:
        raise ValueError(f"tokens must be a (B, n, d) tensor, got shape {_shape(tokens)}")
    if not isinstance(cls_attn, torch.Tensor) or tuple(cls_attn.shape) != tuple(tokens.shape[:2]):
        raise ValueError(f"cls_attn must have shape (B, n) = {tuple(tokens.shape[:2])}, got {_shape(cls_attn)}")
    B, n, _ = tokens.shape
    if B < 1 or n < 1:
        raise ValueError(f"tokens must hold at least one image and one token, got shape {tuple(tokens.shape)}")
    for name, t in (("tokens", tokens), ("cls_attn", cls_attn)):
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
        if not _all_finite(t):
            raise ValueError(f"{name} contains NaN or infinite values")
    if cls_attn.device != tokens.device:
        raise ValueError(f"cls_attn is on {cls_attn.device} but tokens on {tokens.device}")
    return B, n


def _check_icctp_inputs(tokens, cls_attn, centers, center_mask, budget, rho_g, alpha, allocation, rho_c):
    """Validate `icctp_select` arguments; return (B, n, K)."""
    B, n = check_selection_inputs(tokens, cls_attn, budget)
    if not 0.0 < rho_g < 1.0:
        raise ValueError(f"rho_g must be in (0, 1), got {rho_g}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if allocation not in ALLOCATIONS:
        raise ValueError(f"allocation must be one of {ALLOCATIONS}, got {allocation!r}")
    if rho_c is not None and not 0.0 < rho_c <= 1.0:
        raise ValueError(f"rho_c must be in (0, 1] or None, got {rho_c}")
    if not isinstance(centers, torch.Tensor) or centers.dim() != 3 or centers.shape[0] != B or centers.shape[2] != tokens.shape[2]:
        raise ValueError(f"centers must have shape (B, K, d) with B={B}, d={tokens.shape[2]}, got {_shape(centers)}")
    K = centers.shape[1]
    if not isinstance(center_mask, torch.Tensor) or tuple(center_mask.shape) != (B, K):
        raise ValueError(f"center_mask must have shape (B, K) = {(B, K)}, got {_shape(center_mask)}")
    if center_mask.dtype != torch.bool:
        raise TypeError(f"center_mask must be a bool tensor, got {center_mask.dtype}")
    if not centers.is_floating_point():
        raise TypeError(f"centers must be a floating tensor, got {centers.dtype}")
    if centers.device != tokens.device or center_mask.device != tokens.device:
        raise ValueError(f"centers/center_mask must be on {tokens.device}, got {centers.device}/{center_mask.device}")
    no_center = ~center_mask.any(dim=1)
    if bool(no_center.any()):
        raise ValueError(f"no valid center (center_mask all False) in samples {no_center.nonzero()[:, 0].tolist()}")
    if bool((~torch.isfinite(centers).all(dim=-1) & center_mask).any()):
        raise ValueError("centers contains NaN or infinite values in a valid (masked True) center")
    return B, n, K


def _all_finite(x: torch.Tensor) -> bool:
    """True if `x` has no NaN/inf: one summing pass, full elementwise check only if the sum is not finite."""
    return bool(torch.isfinite(x.sum(dtype=torch.float32))) or bool(torch.isfinite(x).all())


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__
