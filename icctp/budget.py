"""Budget arithmetic: per-cluster allocation for ICCTP and per-grid budgets for LLaVA-NeXT.

All allocations are computed in exact integer arithmetic (no float rounding), ties broken towards
the lower index, and `exact_allocation` is batched with a number of torch operations that does not
depend on the batch size or the number of clusters.
"""
from __future__ import annotations

from fractions import Fraction

import torch

REFERENCE_TOKENS = 576  # LLaVA-1.5's visual tokens per image: budgets are stated per this many


def exact_allocation(sizes: torch.Tensor, total: int, priority: torch.Tensor) -> torch.Tensor:
    """Split `total` kept tokens over clusters: proportional to size, at least 1 per cluster.

    Args:
        sizes: (B, K) int64, number of tokens in each cluster (0 = empty or padded cluster).
        total: tokens to allocate per sample, 0 <= total <= sizes.sum(1) for every sample.
        priority: (B, K) int64, lower = served first when `total` < number of non-empty clusters;
            distinct among the non-empty clusters of a sample (ignored for empty ones).

    Returns:
        (B, K) int64 `k` with `k.sum(1) == total`, `0 <= k <= sizes`, `k == 0` on empty clusters, and:
        - if `total` < E (non-empty clusters): one token to each of the `total` best-priority clusters;
        - else water-filling with a floor of 1: real quotas `q_j = max(1, lam * |C_j|)` with `lam`
          chosen so that `sum q_j == total`, then largest-remainder rounding (equal remainders:
          lower cluster index first). Since `total <= sum |C_j|`, `q_j <= |C_j|`, so the size cap
          holds by construction and no overflow is left to redistribute.
    The quotas are exact rationals `num * |C_j| / S` (the proportional clusters are the `t` largest,
    `S` their total size, `num = total - (E - t)`), so floors and remainders are integer ops.
    """
    if sizes.dim() != 2 or priority.shape != sizes.shape:
        raise ValueError(f"sizes and priority must both be (B, K); got {tuple(sizes.shape)} and {tuple(priority.shape)}")
    if total < 0:
        raise ValueError(f"total must be >= 0, got {total}")
    sizes = sizes.long()
    B, K = sizes.shape
    nonempty = sizes > 0  # (B, K)
    n_nonempty = nonempty.sum(1, keepdim=True)  # (B, 1)

    # Fewer tokens than clusters: one each to the best-priority clusters.
    big = torch.iinfo(torch.int64).max
    prio = torch.where(nonempty, priority.long(), big)
    prio_order = torch.sort(prio, dim=1, stable=True).indices
    prio_rank = torch.empty_like(prio_order).scatter_(1, prio_order, _positions(B, K, sizes.device))
    few = ((prio_rank < total) & nonempty).long()

    # Water-filling: the t largest clusters are proportional, the others get exactly 1.
    sorted_sizes, size_order = torch.sort(sizes, dim=1, descending=True, stable=True)  # (B, K)
    cum_sizes = sorted_sizes.cumsum(1)  # S_t for t = 1..K
    t_grid = _positions(B, K, sizes.device) + 1
    is_prop_sorted = ((total - n_nonempty + t_grid) * sorted_sizes >= cum_sizes) & (sorted_sizes > 0)
    t = is_prop_sorted.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
    s_t = cum_sizes.gather(1, t - 1).clamp(min=1)  # (B, 1); clamp only guards all-empty rows
    num = total - n_nonempty + t  # (B, 1)
    is_prop = torch.empty_like(is_prop_sorted).scatter_(1, size_order, is_prop_sorted)
    quota_num = num * sizes  # (B, K)
    base = torch.where(is_prop, quota_num // s_t, nonempty.long())
    remainder = torch.where(is_prop, quota_num % s_t, -1)
    leftover = total - base.sum(1, keepdim=True)  # (B, 1)
    rem_order = torch.sort(remainder, dim=1, descending=True, stable=True).indices
    rem_rank = torch.empty_like(rem_order).scatter_(1, rem_order, _positions(B, K, sizes.device))
    proportional = base + (rem_rank < leftover).long()

    return torch.where(n_nonempty > total, few, proportional)


def scaled_budget(budget: int, n_visual: int, reference: int = REFERENCE_TOKENS) -> int:
    """Budget for an image of `n_visual` tokens keeping the fraction `budget / reference`.

    `round(budget * n_visual / reference)` (exact rational, Python's half-to-even rounding),
    clamped to [1, n_visual]. E.g. LLaVA-NeXT: scaled_budget(64, 2880) == 320.
    """
    for name, value in (("budget", budget), ("n_visual", n_visual), ("reference", reference)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return max(1, min(n_visual, round(Fraction(budget * n_visual, reference))))


def split_budget(total: int, sizes: list[int]) -> list[int]:
    """Split `total` tokens over grids of `sizes` tokens (LLaVA-NeXT base image + crops).

    Proportional to size with largest-remainder rounding (equal remainders: lower index first).
    Each share is <= its size and the shares sum to min(total, sum(sizes)).
    """
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"total must be an int >= 0, got {total!r}")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in sizes):
        raise ValueError(f"sizes must be ints >= 0, got {sizes!r}")
    whole = sum(sizes)
    if total >= whole:
        return list(sizes)
    shares = [total * s // whole for s in sizes]
    remainders = [total * s % whole for s in sizes]
    leftover = total - sum(shares)
    for i in sorted(range(len(sizes)), key=lambda i: -remainders[i])[:leftover]:
        shares[i] += 1
    return shares


def _positions(batch: int, length: int, device: torch.device) -> torch.Tensor:
    """(batch, length) int64 grid of 0..length-1 along dim 1."""
    return torch.arange(length, device=device).expand(batch, length)
