"""Per-sample references that walk the official baseline code step by step, for equality tests.

Each takes ONE image (batch size 1, as the official code runs) and mirrors the official control flow:
VisionZip ``CLIPVisionTower_VisionZip.forward``, ToMe ``bipartite_soft_matching`` + ``merge_wavg``,
PruMerge ``token_prune_merge_advanced(_plus)`` with its Python loop over kept tokens and
``complement_idx``, and ``np.percentile`` for the outlier count. Float32 throughout.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def visionzip_one(hidden, cls_attn, keys, dominant, contextual):
    """hidden (T, D), cls_attn (H, T), keys (H, T, hd) -> (tokens, all_indices as the official returns)."""
    dominant_num = dominant - 1  # main.py: visionzip(model, dominant) stores dominant - 1
    score = cls_attn[:, 1:].sum(dim=0)
    topk = score.topk(dominant_num).indices + 1
    all_indices = torch.cat([torch.zeros(1, dtype=torch.long), topk])
    mask = torch.ones(hidden.shape[0], dtype=torch.bool).scatter_(0, all_indices, False)
    dominant_tokens = hidden[~mask]
    metric = keys.mean(dim=0)[mask]
    metric = metric / metric.norm(dim=-1, keepdim=True)
    rest = hidden[mask]
    step = max(1, metric.shape[0] // contextual)
    targets = torch.arange(0, metric.shape[0], step)[:contextual]
    is_target = torch.isin(torch.arange(metric.shape[0]), targets)
    similarity = metric[~is_target] @ metric[targets].T
    others = rest[~is_target]
    joined = torch.zeros(contextual, hidden.shape[1])
    counts = torch.zeros(contextual)
    for j, t in enumerate(similarity.argmax(dim=1).tolist()):
        joined[t] += others[j]
        counts[t] += 1
    contextual_tokens = rest[targets] + joined / counts.clamp(min=1)[:, None]
    return torch.cat([dominant_tokens, contextual_tokens]), all_indices


def tome_one(x, metric, r, size=None, class_token=True):
    """x (T, C), metric (T, c), size (T, 1) | None -> (x', size'), written as loops over token pairs."""
    T = x.shape[0]
    size = torch.ones(T, 1) if size is None else size
    r = min(r, (T - int(class_token)) // 2)
    if r <= 0:
        return x * size / size, size
    unit = metric / metric.norm(dim=-1, keepdim=True)
    a_pos, b_pos = list(range(0, T, 2)), list(range(1, T, 2))
    best, best_b = [], []
    for i, a in enumerate(a_pos):
        scores = [float(unit[a] @ unit[b]) for b in b_pos]
        if class_token and i == 0:
            scores = [-math.inf] * len(b_pos)
        j = max(range(len(b_pos)), key=lambda k: (scores[k], -k))  # first maximum
        best.append(scores[j])
        best_b.append(j)
    ranked = sorted(range(len(a_pos)), key=lambda i: (-best[i], i))
    merged, unmerged = ranked[:r], ranked[r:]
    if class_token:
        unmerged = sorted(unmerged)
    b_sum = [x[b] * size[b] for b in b_pos]
    b_size = [size[b].clone() for b in b_pos]
    for i in merged:
        b_sum[best_b[i]] = b_sum[best_b[i]] + x[a_pos[i]] * size[a_pos[i]]
        b_size[best_b[i]] = b_size[best_b[i]] + size[a_pos[i]]
    rows = [x[a_pos[i]] * size[a_pos[i]] for i in unmerged] + b_sum
    sizes = [size[a_pos[i]] for i in unmerged] + b_size
    sizes = torch.stack(sizes)
    return torch.stack(rows) / sizes, sizes


def outlier_ratio_numpy(attn):
    """The official ``outlier_dectection``."""
    values = attn.to(torch.float32).numpy().flatten()
    q1, q3 = np.percentile(values, 25), np.percentile(values, 75)
    upper = q3 + 1.5 * (q3 - q1)
    return len(np.where(values > upper)[0]) / len(values)


def complement_official(idx, dim):
    """``complement_idx`` for a 1-D index."""
    masked = torch.scatter(torch.arange(dim), -1, idx, 0)
    return torch.sort(masked).values[idx.numel():]


def prumerge_one(features, keys, cls_query, adaptive=True, reduction_ratio=1 / 8, plus=True):
    """features (N, C), keys (N+1, C), cls_query (C,) -> (n + 1, C), the official per-token loop."""
    N, C = features.shape
    attn = F.softmax((cls_query[None] @ keys.T) * C**-0.5, dim=-1)
    cls_attn = attn[0, 1:]
    if adaptive:
        reduction_ratio = outlier_ratio_numpy(cls_attn)
    idx = torch.topk(cls_attn, int(N * reduction_ratio), largest=True).indices
    if plus:
        step_length = int(1 / reduction_ratio)
        if adaptive:
            sequence = torch.arange(0, 575 if N == 576 else N - 1, int(step_length / 3))
            idx = torch.cat([idx, torch.tensor([int(s) for s in sequence if s not in idx], dtype=torch.long)])
        else:
            sequence = torch.arange(int(step_length / 2), 575 if N == 576 else N - 1, int(step_length))
            idx = torch.cat([idx, sequence])
    key_wo_cls = keys[1:]
    x_others, x_attn = features[idx], cls_attn[idx]
    compl = complement_official(idx, N)
    non_topk, non_topk_attn = features[compl], cls_attn[compl]
    key_norm = F.normalize(key_wo_cls[idx], p=2, dim=-1)
    non_topk_key_norm = F.normalize(key_wo_cls[compl], p=2, dim=-1)
    updated = torch.zeros_like(x_others)
    for i in range(idx.numel()):
        rest_x = torch.cat([x_others[:i], x_others[i + 1:], non_topk])
        rest_attn = torch.cat([x_attn[:i], x_attn[i + 1:], non_topk_attn])
        rest_keys = torch.cat([key_norm[:i], key_norm[i + 1:], non_topk_key_norm])
        cluster = torch.topk(key_norm[i] @ rest_keys.T, k=32).indices
        updated[i] = x_others[i] + (rest_x[cluster] * rest_attn[cluster][:, None]).sum(dim=0)
    extra = (non_topk * non_topk_attn[:, None]).sum(dim=0, keepdim=True)
    return torch.cat([updated, extra])
