"""ToMe inside the CLIP vision tower: every encoder layer up to the selected one merges tokens.

``tome_layer`` is a CLIP encoder layer with ToMe's patch (``tome/patch/timm.py``: ``ToMeBlock`` and
``ToMeAttention``) written over transformers' ``CLIPEncoderLayer`` parts: layer norm, attention with
proportional attention (``log size`` added to the logits), output projection, residual, then
``tome_merge`` of ``r`` tokens by the layer's head-averaged keys, then the MLP. ``merged_visual_tokens``
runs the tower this way once per image (this IS the method's vision pass; the stock pass is not run)
and projects what is left after CLS is dropped.

The r schedule (``merge_rounds``, from ``icctp.tome.tome_schedule``) takes each pass's ``1 + n`` tokens to exactly
``1 + scaled_budget(budget, n)`` over the layers that produce the selected features (23 of CLIP-L's 24
at ``vision_feature_layer = -2``): as constant an r as possible, the remainder on the first layers,
more on the last layers only where ToMe's 50% cap would otherwise stop it (budget 64: r = 23 in
layers 0-5, 22 after). Towers too shallow for that (the tiny test models, 1-2 layers) merge in
further rounds in their last layer. The merged tokens keep ToMe's order (unmerged set-A tokens, then set B); on
LLaVA-NeXT each pass (base, then each crop) keeps that budget, concatenated without newline tokens.
"""
from __future__ import annotations

import torch

from icctp.budget import scaled_budget
from icctp.tome import tome_attention, tome_merge, tome_schedule
from pipeline.model import compat
from pipeline.model.vision import attention_layer_index
from pipeline.model.visual import ImagePixels, VisualTokens


def tome_layer(layer: torch.nn.Module, x: torch.Tensor, size: torch.Tensor | None, rounds: list[int]):
    """One ToMe CLIP encoder layer on x (B, T, D) with token sizes (B, T, 1) or None; ``rounds``: the r
    of each merge between its attention and its MLP (one round, except on towers too shallow for the
    budget, see ``merge_rounds``). Returns (x' (B, T - Σr, D), size' (B, T - Σr, 1) or None while
    nothing has merged)."""
    attn = layer.self_attn
    num_heads, head_dim, _ = compat.attention_geometry(attn)
    B, T, D = x.shape
    h = layer.layer_norm1(x)
    q, k, v = (proj(h).view(B, T, num_heads, head_dim).transpose(1, 2) for proj in (attn.q_proj, attn.k_proj,
                                                                                      attn.v_proj))
    out, metric = tome_attention(q, k, v, size)
    x = x + attn.out_proj(out)
    for r in rounds:  # a further round matches on the size-weighted mean keys of the merged tokens
        both, size = tome_merge(torch.cat([x.float(), metric], dim=-1), metric, r, size, class_token=True)
        x, metric = both[..., :D].to(x.dtype), both[..., D:]
    return x + layer.mlp(layer.layer_norm2(x)), size


@torch.no_grad()
def merging_encode(model, pixel_values: torch.Tensor, keep: int, chunk: int = 16) -> tuple[torch.Tensor, list[int]]:
    """Pixels (N, 3, H, W) -> (N, keep, d_llm) projected merged tokens (CLS dropped) and the r schedule."""
    config = model.config
    tower, proj = compat.vision_tower(model), compat.projector(model)
    body = getattr(tower, "vision_model", tower)
    layers = compat.vision_encoder_layers(model)
    last = attention_layer_index(len(layers), config.vision_feature_layer)
    n = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    schedule = merge_rounds(last + 1, n + 1, keep)
    out = []
    for start in range(0, pixel_values.shape[0], chunk):
        pixels = pixel_values[start : start + chunk].to(tower.device, tower.dtype)
        x, size = body.pre_layrnorm(body.embeddings(pixels)), None
        for layer, rounds in zip(layers[: last + 1], schedule):
            x, size = tome_layer(layer, x, size, rounds)
        out.append(proj(x[:, 1:]))
    return torch.cat(out), schedule


def merge_rounds(num_layers: int, n_tokens: int, keep: int) -> list[list[int]]:
    """Per layer, the r of each merge round: ``[[r_l]]`` from ``icctp.tome.tome_schedule`` where the
    layers can reach ``keep`` (CLIP-L at any budget >= 1); on a tower too shallow for that (ToMe removes
    at most half of a layer's tokens) every layer merges its most, and the last layer merges again in
    further rounds until ``keep`` + CLS tokens are left."""
    try:
        return [[r] for r in tome_schedule(num_layers, n_tokens, keep)]
    except ValueError:
        pass
    rounds, tokens = [], n_tokens
    for _ in range(num_layers):
        r = min((tokens - 1) // 2, tokens - 1 - keep)
        rounds.append([r])
        tokens -= r
    while tokens - 1 > keep:
        r = min((tokens - 1) // 2, tokens - 1 - keep)
        rounds[-1].append(r)
        tokens -= r
    return rounds


def merged_visual_tokens(model, images: list[ImagePixels], budget: int) -> list[VisualTokens]:
    """ToMe's vision step: each image's passes merged to ``scaled_budget(budget, n)`` tokens each, one
    grid holding them all (nothing is pruned after); ``n_source`` = the patches before merging."""
    config = model.config
    n = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    keep = scaled_budget(budget, n)
    pixels = torch.cat([im.pixel_values for im in images])
    tokens, _ = merging_encode(model, pixels, keep)  # (sum P, keep, d)
    out, start = [], 0
    for im in images:
        count = im.pixel_values.shape[0]
        seq = tokens[start : start + count].flatten(0, 1)
        start += count
        grid = torch.arange(seq.shape[0], device=seq.device)
        out.append(VisualTokens(seq, [grid], [torch.zeros(seq.shape[0], device=seq.device)],
                                grid[:0], n_source=count * n))
    return out
