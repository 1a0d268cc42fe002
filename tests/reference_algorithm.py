"""Line-by-line reference of ICCTP Algorithm 1 for one image: plain Python loops, float64.

Test-only (also timed by scripts/bench_select.py). Ties go to the lower index everywhere, as in
`icctp.select.icctp_select`. The "exact" allocation is written as an iterative fixpoint over
`fractions.Fraction` quotas, independent of the closed form in `icctp.budget.exact_allocation`.
"""
from __future__ import annotations

import math
from fractions import Fraction

import torch


def reference_icctp(
    tokens: torch.Tensor,
    cls_attn: torch.Tensor,
    centers: list[torch.Tensor],
    budget: int,
    rho_g: float = 0.6,
    alpha: float = 0.3,
    allocation: str = "exact",
    rho_c: float | None = None,
) -> tuple[list[int], list[int]]:
    """One image: tokens (n, d), cls_attn (n,), centers: the K valid (d,) centers.

    Returns (kept, clusters): sorted kept indices and the cluster of each (-1 = global preselection).
    """
    n = tokens.shape[0]
    v = tokens.double()
    a = [float(x) for x in cls_attn.float()]
    if budget >= n:
        allocation = "exact"
    n_a = min(budget, n)

    # Step 1: global token preselection (lines 2-4).
    k_g = math.floor(rho_g * n_a)
    by_attention = sorted(range(n), key=lambda i: (-a[i], i))
    global_set = by_attention[:k_g]
    residual = [i for i in range(n) if i not in set(global_set)]

    # Step 2: cluster each residual token to its nearest center (lines 7-11).
    centers64 = [c.double() for c in centers]
    clusters: list[list[int]] = [[] for _ in centers64]
    cos_to_center = {}
    for i in residual:
        best_j, best_cos = 0, -math.inf
        for j, c in enumerate(centers64):
            cos = _cosine(v[i], c)
            if cos > best_cos:
                best_j, best_cos = j, cos
        clusters[best_j].append(i)
        cos_to_center[i] = best_cos

    # Step 3: redundancy-aware pruning (lines 13-18).
    a_min, a_max = min(a), max(a)
    score = {}
    for members in clusters:
        for i in members:
            a_tilde = (a[i] - a_min) / (a_max - a_min) if a_max > a_min else 0.0
            score[i] = alpha * cos_to_center[i] + (1 - alpha) * a_tilde
    ranked = [sorted(members, key=lambda i: (-score[i], i)) for members in clusters]

    if allocation == "paper":
        ratio = (n_a - k_g) / len(residual) if rho_c is None else rho_c
        k = [max(1, math.floor(ratio * len(members))) if members else 0 for members in clusters]
    else:
        top_order = sorted((j for j in range(len(clusters)) if clusters[j]), key=lambda j: (-score[ranked[j][0]], ranked[j][0]))
        priority = [0] * len(clusters)
        for p, j in enumerate(top_order):
            priority[j] = p
        k = reference_exact_allocation([len(m) for m in clusters], n_a - k_g, priority)

    kept = {i: -1 for i in global_set}
    for j, members in enumerate(ranked):
        for i in members[: k[j]]:
            kept[i] = j
    order = sorted(kept)
    return order, [kept[i] for i in order]


def reference_exact_allocation(sizes: list[int], total: int, priority: list[int]) -> list[int]:
    """Proportional split of `total` with at least 1 per non-empty cluster, by fixpoint iteration.

    If total < #non-empty: 1 to each of the `total` lowest-priority-value clusters. Otherwise start
    with every non-empty cluster proportional; while some proportional cluster's quota
    (total - #fixed) * size / (sum of proportional sizes) is below 1, fix it at 1; then round the
    quotas by largest remainder (equal remainders: lower index first).
    """
    nonempty = [j for j, s in enumerate(sizes) if s > 0]
    if total < len(nonempty):
        chosen = sorted(nonempty, key=lambda j: priority[j])[:total]
        return [1 if j in chosen else 0 for j in range(len(sizes))]
    fixed: set[int] = set()
    while True:
        prop = [j for j in nonempty if j not in fixed]
        quota = {j: Fraction(total - len(fixed)) * sizes[j] / sum(sizes[p] for p in prop) for j in prop}
        below = [j for j in prop if quota[j] < 1]
        if not below:
            break
        fixed.update(below)
    k = [0] * len(sizes)
    for j in fixed:
        k[j] = 1
    for j in prop:
        k[j] = math.floor(quota[j])
    leftover = total - sum(k)
    for j in sorted(prop, key=lambda j: (-(quota[j] - math.floor(quota[j])), j))[:leftover]:
        k[j] += 1
    return k


def _cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    nx, ny = float(x.norm()), float(y.norm())
    if nx == 0.0 or ny == 0.0:
        return 0.0
    return float(x @ y) / (nx * ny)
