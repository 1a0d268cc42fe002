"""One registry for every visual-token selection method: `select(method, ...)`.

Every method sees the projected visual tokens (B, n, d) and the vision tower's CLS attention (B, n)
and keeps, per image, exactly `min(budget, n)` tokens (kept indices plus, for visionzip, merged
tokens); `full` keeps all n. A sample's answer never depends on the other samples in the batch.
FastV, DART and SparseVLM prune inside the LLM: ``icctp.llm_pruning`` and ``icctp.layer_pruners``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from icctp.select import check_selection_inputs, icctp_select

METHODS = ("full", "random", "cls", "visionzip", "dart_pre", "icctp")


class Selection(list):
    """Per-sample sorted int64 kept indices (a list of B tensors) plus method extras.

    merged: list of B (m_b, d) tensors (input dtype) appended AFTER the kept tokens, or None;
        `len(kept[b]) + m_b == min(budget, n)`.
    clusters: list of B int64 tensors aligned with the kept indices (icctp only; -1 = global
        preselection), or None.
    """

    def __init__(self, kept, merged: list[torch.Tensor] | None = None, clusters: list[torch.Tensor] | None = None):
        super().__init__(kept)
        self.merged = merged
        self.clusters = clusters


def select(
    method: str,
    tokens: torch.Tensor,
    cls_attn: torch.Tensor,
    budget: int,
    *,
    centers: torch.Tensor | None = None,
    center_mask: torch.Tensor | None = None,
    seeds: list[int] | None = None,
    **params,
) -> Selection:
    """Run `method` (one of METHODS) on a batch.

    Args:
        tokens: (B, n, d) projected visual tokens; cls_attn: (B, n) CLS attention; budget: int >= 1.
        centers, center_mask: (B, K, d), (B, K) bool noun centers — required by "icctp", ignored otherwise.
        seeds: per-sample seeds for "random" (default 0 for every sample), ignored otherwise.
        params: method options, e.g. rho_g/alpha/allocation/rho_c (icctp), n_pivots (dart),
            dominant_ratio (visionzip). An option the method does not take raises TypeError.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    check_selection_inputs(tokens, cls_attn, budget)
    if method == "icctp":
        return select_icctp(tokens, cls_attn, budget, centers, center_mask, **params)
    if method == "random":
        return select_random(tokens, cls_attn, budget, seeds, **params)
    return _BY_NAME[method](tokens, cls_attn, budget, **params)


def select_full(tokens: torch.Tensor, cls_attn: torch.Tensor, budget: int) -> Selection:
    """Unpruned model: every one of the n tokens, whatever the budget."""
    B, n, _ = tokens.shape
    return Selection([torch.arange(n, device=tokens.device)] * B)


def select_random(tokens: torch.Tensor, cls_attn: torch.Tensor, budget: int, seeds: list[int] | None = None) -> Selection:
    """Random selection (the paper's ablation baseline): min(budget, n) tokens drawn uniformly.

    Sample b uses `torch.Generator().manual_seed(seeds[b])` (CPU; default seed 0 for every sample),
    so its draw is reproducible and independent of the batch it is in.
    """
    B, n, _ = tokens.shape
    if seeds is None:
        seeds = [0] * B
    if len(seeds) != B:
        raise ValueError(f"seeds must have one entry per sample ({B}), got {len(seeds)}")
    n_a = min(budget, n)
    kept = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(int(seed))
        kept.append(torch.sort(torch.randperm(n, generator=generator)[:n_a]).values.to(tokens.device))
    return Selection(kept)


def select_icctp(tokens: torch.Tensor, cls_attn: torch.Tensor, budget: int, centers: torch.Tensor | None = None,
                 center_mask: torch.Tensor | None = None, rho_g: float = 0.6, alpha: float = 0.3,
                 allocation: str = "exact", rho_c: float | None = None) -> Selection:
    """ICCTP (`icctp.select.icctp_select`, options as there) as a `Selection` with its clusters;
    centers (B, K, d) and center_mask (B, K) are required."""
    if centers is None or center_mask is None:
        raise ValueError("method 'icctp' needs centers and center_mask")
    kept, clusters = icctp_select(tokens, cls_attn, centers, center_mask, budget, rho_g=rho_g, alpha=alpha,
                                  allocation=allocation, rho_c=rho_c, return_clusters=True)
    return Selection(kept, clusters=clusters)


def select_cls(tokens: torch.Tensor, cls_attn: torch.Tensor, budget: int) -> Selection:
    """FasterVLM (Zhang et al. 2024): the min(budget, n) tokens the vision tower's CLS token attends
    to most at the selected layer (-2), attention averaged over heads (ties: lower index), kept in
    raster order (`attentions[-2][:, :, 0, 1:].mean(1)`, top-k, boolean mask in the official code)."""
    n_a = min(budget, tokens.shape[1])
    return Selection(list(_top_cls(cls_attn, n_a).sort(dim=1).values))


def select_visionzip(tokens: torch.Tensor, cls_attn: torch.Tensor, budget: int, dominant_ratio: float = 54 / 64) -> Selection:
    """VisionZip (Yang et al., CVPR 2025): dominant tokens plus merged contextual tokens.

    - dominant: the floor(dominant_ratio * n_a) tokens with the highest CLS attention (VisionZip keeps
      54 dominant + 10 contextual at 64 tokens, 108 + 20 at 128);
    - contextual: the other n - n_dom tokens, in raster order; c = n_a - n_dom targets are taken
      evenly spaced (every max(1, (n - n_dom) // c)-th), every other token joins its most
      cosine-similar target, and each contextual token is the mean of its target and its joiners.
    Kept = sorted dominant indices; `merged` = the c contextual tokens (ordered by target position).
    Departures from VisionZip: similarity uses the projected tokens (not the vision tower's keys),
    and the target is averaged with its group (VisionZip adds the target to the group's mean).
    """
    if not 0.0 <= dominant_ratio <= 1.0:
        raise ValueError(f"dominant_ratio must be in [0, 1], got {dominant_ratio}")
    B, n, d = tokens.shape
    if budget >= n:
        return Selection([torch.arange(n, device=tokens.device)] * B, merged=[tokens.new_zeros(0, d)] * B)
    n_dom = int(dominant_ratio * budget)
    n_ctx = budget - n_dom
    dominant = _top_cls(cls_attn, n_dom)  # (B, n_dom)
    if n_ctx == 0:
        return Selection(list(dominant.sort(dim=1).values), merged=[tokens.new_zeros(0, d)] * B)
    is_dom = torch.zeros(B, n, dtype=torch.bool, device=tokens.device).scatter_(1, dominant, True)
    rest = (~is_dom).nonzero()[:, 1].view(B, n - n_dom)  # (B, n_rest) ascending
    rest_tokens = tokens.float().gather(1, rest[..., None].expand(-1, -1, d))  # (B, n_rest, d)

    n_rest = n - n_dom
    target_pos = torch.arange(0, n_rest, max(1, n_rest // n_ctx), device=tokens.device)[:n_ctx]
    is_target = torch.zeros(n_rest, dtype=torch.bool, device=tokens.device)
    is_target[target_pos] = True
    targets = rest_tokens[:, is_target]  # (B, n_ctx, d)
    joiners = rest_tokens[:, ~is_target]  # (B, n_rest - n_ctx, d)
    sim = torch.bmm(F.normalize(joiners, dim=-1), F.normalize(targets, dim=-1).transpose(1, 2))
    groups = F.one_hot(sim.argmax(dim=-1), n_ctx).to(torch.float32).transpose(1, 2)  # (B, n_ctx, n_join)
    merged = (targets + torch.bmm(groups, joiners)) / (1.0 + groups.sum(-1, keepdim=True))  # (B, n_ctx, d)
    return Selection(list(dominant.sort(dim=1).values), merged=list(merged.to(tokens.dtype)))


def select_dart_pre(tokens: torch.Tensor, cls_attn: torch.Tensor, budget: int,
                    n_pivots: int | None = None) -> Selection:
    """A pre-LLM variant of DART (Wen et al. 2025, "Stop Looking for Important Tokens ...
    Duplication Matters More"); not the published method, which prunes inside the LLM
    (``icctp.llm_pruning.dart_keep``, method ``dart``).

    Pivots: the p tokens with the highest CLS attention (DART ranks by key norms inside the LLM; here
    selection happens before the LLM), p = n_pivots or min(8, max(1, n_a // 8)). Then, pivot by pivot
    in CLS order, DART's greedy duplication removal on the projected tokens: pivot i adds the q_i
    not-yet-kept tokens least cosine-similar to it (ties: lower index), with the n_a - p remaining
    slots split as evenly as possible (the first pivots get one more). Kept = pivots + added.
    """
    B, n, d = tokens.shape
    if budget >= n:
        return Selection([torch.arange(n, device=tokens.device)] * B)
    p = min(8, max(1, budget // 8)) if n_pivots is None else n_pivots
    if not 1 <= p <= budget:
        raise ValueError(f"n_pivots must be in [1, budget={budget}], got {p}")
    unit = F.normalize(tokens.float(), dim=-1)  # (B, n, d)
    pivots = _top_cls(cls_attn, p)  # (B, p)
    kept = torch.zeros(B, n, dtype=torch.bool, device=tokens.device).scatter_(1, pivots, True)
    per_pivot, extra = divmod(budget - p, p)
    for i in range(p):
        quota = per_pivot + (i < extra)
        pivot = unit.gather(1, pivots[:, i, None, None].expand(-1, 1, d))  # (B, 1, d)
        sim = torch.bmm(unit, pivot.transpose(1, 2)).squeeze(-1).masked_fill(kept, torch.inf)  # (B, n)
        least = torch.sort(sim, dim=1, stable=True).indices[:, :quota]
        kept.scatter_(1, least, True)
    return Selection(list(kept.nonzero()[:, 1].view(B, budget)))


def _top_cls(cls_attn: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) indices of the k highest CLS attentions per row, best first, ties to the lower index."""
    return torch.sort(cls_attn.float(), dim=1, descending=True, stable=True).indices[:, :k]


_BY_NAME = {"full": select_full, "cls": select_cls, "visionzip": select_visionzip, "dart_pre": select_dart_pre}
