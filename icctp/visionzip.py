"""VisionZip (Yang et al., CVPR 2025) as published: dominant tokens plus merged contextual tokens.

Follows ``visionzip/clip_encoder.py`` of the official code (``CLIPVisionTower_VisionZip.forward``) on
the vision tower's layer -2, before the projector, batched. Scores, cosines and means are computed in
float32; tokens come back in the dtype of ``hidden``.
"""
from __future__ import annotations

import torch

DOMINANT_SHARE = 54 / 64  # the official splits: 54 + 10 at 64, 108 + 20 at 128, 162 + 30 at 192, 27 + 5 at 32


def visionzip_compress(hidden: torch.Tensor, cls_attn: torch.Tensor, keys: torch.Tensor, dominant: int,
                       contextual: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Compress one CLIP layer's tokens into ``dominant + contextual`` tokens, CLS included.

    Args:
        hidden: (B, N+1, D) output of the vision encoder layer -2, CLS at 0, pre-projector.
        cls_attn: (B, H, N+1) that layer's attention probabilities of the CLS query over all keys.
        keys: (B, H, N+1, hd) that layer's ``k_proj`` output (bias included, unscaled), split into heads.
        dominant: tokens kept by CLS attention, CLS included (1 <= dominant <= N+1): CLS plus the
            ``dominant - 1`` patches with the highest CLS attention summed over heads.
        contextual: merged tokens (0 <= contextual <= N+1 - dominant). The other tokens, in index order,
            are matched by cosine of their head-averaged keys to ``contextual`` targets taken every
            ``max(1, n_rest // contextual)``-th; a contextual token is its target plus the mean of the
            tokens that joined it (the target itself is not averaged in).

    Returns:
        tokens: (B, dominant + contextual, D) = dominant tokens in index order (CLS first), then the
            contextual tokens in target order; kept: (B, dominant) int64 ascending, ``kept[:, 0] == 0``.
    """
    B, T, D = _check(hidden, cls_attn, keys, dominant, contextual)
    device = hidden.device
    score = cls_attn[:, :, 1:].float().sum(dim=1)  # (B, N)
    top = torch.sort(score, dim=1, descending=True, stable=True).indices[:, : dominant - 1] + 1
    is_dominant = torch.zeros(B, T, dtype=torch.bool, device=device)
    is_dominant[:, 0] = True
    is_dominant.scatter_(1, top, True)
    kept = is_dominant.nonzero()[:, 1].view(B, dominant)
    dominant_tokens = hidden.gather(1, kept[..., None].expand(-1, -1, D))
    if contextual == 0:
        return dominant_tokens, kept

    n_rest = T - dominant
    rest = (~is_dominant).nonzero()[:, 1].view(B, n_rest)  # ascending
    metric = keys.float().mean(dim=1)  # (B, T, hd)
    metric = metric.gather(1, rest[..., None].expand(-1, -1, metric.shape[-1]))
    metric = metric / metric.norm(dim=-1, keepdim=True)
    rest_hidden = hidden.float().gather(1, rest[..., None].expand(-1, -1, D))  # (B, n_rest, D)

    step = max(1, n_rest // contextual)
    is_target = torch.zeros(n_rest, dtype=torch.bool, device=device)
    is_target[torch.arange(0, n_rest, step, device=device)[:contextual]] = True
    similarity = metric[:, ~is_target] @ metric[:, is_target].transpose(1, 2)  # (B, n_join, contextual)
    assign = torch.zeros_like(similarity).scatter_(2, similarity.argmax(dim=2, keepdim=True), 1.0)
    counts = assign.sum(dim=1).clamp(min=1)[..., None]  # (B, contextual, 1)
    joined = assign.transpose(1, 2) @ rest_hidden[:, ~is_target] / counts
    contextual_tokens = rest_hidden[:, is_target] + joined
    return torch.cat([dominant_tokens, contextual_tokens.to(hidden.dtype)], dim=1), kept


def visionzip_split(budget: int, dominant_share: float = DOMINANT_SHARE) -> tuple[int, int]:
    """(dominant, contextual) for ``budget`` tokens the LM sees, CLS counted in ``dominant``:
    ``dominant = max(1, floor(dominant_share * budget))``; 64 -> (54, 10), 128 -> (108, 20)."""
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be an int >= 1, got {budget!r}")
    if not 0.0 <= dominant_share <= 1.0:
        raise ValueError(f"dominant_share must be in [0, 1], got {dominant_share}")
    dominant = max(1, int(dominant_share * budget))
    return dominant, budget - dominant


def _check(hidden, cls_attn, keys, dominant, contextual) -> tuple[int, int, int]:
    if hidden.dim() != 3:
        raise ValueError(f"hidden must be (B, N+1, D), got shape {tuple(hidden.shape)}")
    B, T, D = hidden.shape
    if cls_attn.dim() != 3 or cls_attn.shape[0] != B or cls_attn.shape[2] != T:
        raise ValueError(f"cls_attn must be (B={B}, H, N+1={T}), got shape {tuple(cls_attn.shape)}")
    if keys.dim() != 4 or keys.shape[:3] != (B, cls_attn.shape[1], T):
        raise ValueError(f"keys must be (B={B}, H={cls_attn.shape[1]}, N+1={T}, hd), got shape {tuple(keys.shape)}")
    for name, value in (("dominant", dominant), ("contextual", contextual)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if not 1 <= dominant <= T:
        raise ValueError(f"dominant must be in [1, N+1={T}] (it counts CLS), got {dominant}")
    if not 0 <= contextual <= T - dominant:
        raise ValueError(f"contextual must be in [0, {T - dominant}] (the tokens left after {dominant} dominant), "
                         f"got {contextual}")
    return B, T, D
