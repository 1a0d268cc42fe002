"""Per-sample reference loops for the in-LLM baselines, shaped like the official code at batch size 1.

Each works on one unpadded sample with plain indexing, Python sets and ``topk`` exactly where the
official loops use them, so the batched, padded functions of ``icctp.llm_pruning`` can be held
equal to them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fastv(attn_last: torch.Tensor, image_start: int, n_image: int, R: int) -> list[int]:
    """Kept positions: attn_last (H, L) of the last query; mean over heads, top-R image tokens."""
    image = attn_last.mean(0)[image_start:image_start + n_image]
    top = (image.topk(R).indices + image_start).tolist()
    length = attn_last.shape[1]
    return sorted(list(range(image_start)) + top + list(range(image_start + n_image, length)))


def dart(keys: torch.Tensor, hidden: torch.Tensor, norm_weight: torch.Tensor, image_start: int, n_image: int,
         budget: int, pivot_image=4, pivot_text=4, eps=1e-5, visit=None) -> list[int]:
    """Kept positions. keys (H, L, hd), hidden (L, D). ``visit`` reorders the pivots (default: the
    official ``list(set(...))``)."""
    x = hidden.float()
    state = norm_weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
    flat = keys.permute(1, 0, 2).reshape(keys.shape[1], -1)
    image_norms = torch.norm(flat[image_start:image_start + n_image], p=1, dim=-1)
    text_norms = torch.norm(flat[image_start + n_image:], p=1, dim=-1)
    image_pivots = (image_norms.topk(pivot_image).indices + image_start).tolist()
    text_pivots = (text_norms.topk(pivot_text).indices + image_start + n_image).tolist()
    per_pivot = budget // (pivot_image + pivot_text)
    chosen = set(image_pivots + text_pivots)
    valid = set(range(image_start, image_start + n_image)) - set(image_pivots)
    order = list(chosen) if visit is None else visit(list(chosen))
    for item in order:
        valid_list = list(valid)
        sim = -F.cosine_similarity(state[item], state[valid_list], dim=-1)
        picks = [valid_list[i] for i in sim.topk(per_pivot).indices.tolist()]
        valid.difference_update(picks)
        chosen.update(picks)
    image = {i for i in chosen if image_start <= i < image_start + n_image}
    length = hidden.shape[0]
    return sorted(image | set(range(image_start)) | set(range(image_start + n_image, length)))


def sparsevlm_raters(vis: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """vis (V, D), text (T, D) -> (T,) bool."""
    m = (vis @ text.T).softmax(1).mean(0)
    return m > m.mean()


def sparsevlm_select(attn: torch.Tensor, raters: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """attn (H, T, V), raters (T,) -> keep (V,), relation (V,)."""
    relation = attn.mean(0)[torch.where(raters)[0]].mean(0)
    keep = torch.zeros_like(relation, dtype=torch.bool)
    keep[relation.topk(min(count, relation.shape[0] - 1)).indices] = True
    return keep, relation


def cluster_merge(x: torch.Tensor, clusters: int) -> torch.Tensor:
    """x (m, D) -> (clusters, D): density peaks with kNN density, as the official, without noise."""
    m, dim = x.shape
    dist = (x[:, None] - x[None]).norm(dim=-1) / dim**0.5
    density = (-(dist.topk(clusters, dim=-1, largest=False).values ** 2).mean(-1)).exp()
    higher = (density[None, :] > density[:, None]).float()
    parent = (dist * higher + dist.max() * (1 - higher)).min(-1).values
    centres = (parent * density).topk(clusters).indices
    assign = dist[centres].argmin(0)
    assign[centres] = torch.arange(clusters)
    out = torch.zeros(clusters, dim)
    for k in range(clusters):
        members = assign == k
        out[k] = (x[members] / (members.sum() + 1e-6)).sum(0)
    return out


def sparsevlm_recycle(hidden_vis: torch.Tensor, relation: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """hidden_vis (V, D) -> (n_keep + c, D)."""
    deleted = torch.where(~keep)[0]
    m = int(deleted.shape[0] * 0.3) + 1
    top = relation[deleted].topk(m).indices
    recycled = hidden_vis[deleted][top]
    c = int(m / 10) + 1
    return torch.cat([hidden_vis[keep], cluster_merge(recycled, c)])
