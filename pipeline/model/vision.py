"""Vision encoding: tower -> selected layer -> projector, plus the CLS attention of that layer.

The CLS attention is computed by a forward pre-hook on the selected layer's self-attention
module: only the CLS query row ``softmax(q_cls . K^T / sqrt(d_h))`` averaged over heads, shape
(N, n), so the tower keeps its fast (sdpa) attention and no n x n map is materialised.
"""
from __future__ import annotations

import torch

from pipeline.model import compat


def attention_layer_index(num_layers: int, feature_layer: int) -> int:
    """Index of the encoder layer whose output is ``hidden_states[feature_layer]``."""
    index = num_layers + feature_layer if feature_layer < 0 else feature_layer - 1
    if not 0 <= index < num_layers:
        raise ValueError(f"vision_feature_layer {feature_layer} has no attention layer (tower has {num_layers})")
    return index


def cls_attention_row(attn: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """CLS->patch attention of ``attn`` on its input ``hidden`` (N, 1+n, d): returns (N, n) float32."""
    num_heads, head_dim, scale = compat.attention_geometry(attn)
    batch, length, _ = hidden.shape
    q = attn.q_proj(hidden[:, :1]).view(batch, 1, num_heads, head_dim).transpose(1, 2)  # (N, h, 1, hd)
    k = attn.k_proj(hidden).view(batch, length, num_heads, head_dim).transpose(1, 2)  # (N, h, 1+n, hd)
    scores = (q.float() @ k.float().transpose(-1, -2)) * scale  # (N, h, 1, 1+n)
    return scores.softmax(-1)[:, :, 0, 1:].mean(1)


class ClsAttentionHook:
    """Context manager capturing the CLS attention row of one vision encoder layer."""

    def __init__(self, layer: torch.nn.Module):
        self.attn = layer.self_attn
        self.rows: list[torch.Tensor] = []
        self._handle = None

    def _hook(self, module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        self.rows.append(cls_attention_row(module, hidden))

    def __enter__(self):
        self._handle = self.attn.register_forward_pre_hook(self._hook, with_kwargs=True)
        return self

    def __exit__(self, *exc):
        self._handle.remove()


@torch.no_grad()
def encode(model, pixel_values: torch.Tensor, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode images (N, 3, H, W) -> projected patch tokens (N, n, d_llm) and CLS attention (N, n).

    Uses ``config.vision_feature_layer`` (int) and the ``"default"`` strategy (CLS dropped);
    the CLS attention is that of the layer producing the selected features, averaged over heads.
    """
    config = model.config
    feature_layer = config.vision_feature_layer
    if not isinstance(feature_layer, int):
        raise ValueError(f"only a single vision_feature_layer is supported, got {feature_layer!r}")
    if config.vision_feature_select_strategy != "default":
        raise ValueError("only vision_feature_select_strategy='default' (CLS + patches) is supported")
    tower, proj = compat.vision_tower(model), compat.projector(model)
    layers = compat.vision_encoder_layers(model)
    layer = layers[attention_layer_index(len(layers), feature_layer)]
    features, attentions = [], []
    for start in range(0, pixel_values.shape[0], chunk):
        pixels = pixel_values[start : start + chunk].to(tower.device, tower.dtype)
        with ClsAttentionHook(layer) as hook:
            out = tower(pixels, output_hidden_states=True, return_dict=True)
        selected = out.hidden_states[feature_layer][:, 1:]  # (N, n, d_vision)
        features.append(proj(selected))
        attentions.append(hook.rows[0])
    return torch.cat(features), torch.cat(attentions)
