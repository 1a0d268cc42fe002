"""Vision encoding: tower -> selected layer -> projector, plus the CLS attention of that layer and the
tower states the vision-side baselines read, all from the one tower pass.

The CLS attention is computed by a forward pre-hook on the selected layer's self-attention
module: only the CLS query row ``softmax(q_cls . K^T / sqrt(d_h))`` per head, so the tower keeps its
fast (sdpa) attention and no n x n map is materialised. Forward hooks on that layer's ``k_proj`` and
on the last layer's ``q_proj``/``k_proj`` keep their outputs (``TowerStates``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.model import compat


@dataclass
class TowerStates:
    """What the vision-side baselines read from one tower pass, per encoded image (N of them).

    hidden: (N, 1+n, D) output of the selected layer (``hidden_states[vision_feature_layer]``), CLS at
        0, pre-projector (VisionZip, PruMerge); keys: (N, H, 1+n, hd) that layer's ``k_proj`` output
        split into heads (VisionZip); cls_rows: (N, H, 1+n) that layer's CLS attention per head over all
        keys, float32 (VisionZip); last_keys: (N, 1+n, D) the last encoder layer's ``k_proj`` output and
        last_query: (N, D) its ``q_proj`` output at CLS (PruMerge).
    """

    hidden: torch.Tensor
    keys: torch.Tensor
    cls_rows: torch.Tensor
    last_keys: torch.Tensor
    last_query: torch.Tensor

    def __getitem__(self, index) -> TowerStates:
        return TowerStates(self.hidden[index], self.keys[index], self.cls_rows[index], self.last_keys[index],
                           self.last_query[index])

    @staticmethod
    def cat(parts: list[TowerStates]) -> TowerStates:
        return TowerStates(*(torch.cat([getattr(p, f) for p in parts]) for f in
                             ("hidden", "keys", "cls_rows", "last_keys", "last_query")))


def attention_layer_index(num_layers: int, feature_layer: int) -> int:
    """Index of the encoder layer whose output is ``hidden_states[feature_layer]``."""
    index = num_layers + feature_layer if feature_layer < 0 else feature_layer - 1
    if not 0 <= index < num_layers:
        raise ValueError(f"vision_feature_layer {feature_layer} has no attention layer (tower has {num_layers})")
    return index


def cls_attention_heads(attn: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """CLS attention of ``attn`` on its input ``hidden`` (N, 1+n, d) over all 1+n keys, per head:
    (N, h, 1+n) float32."""
    num_heads, head_dim, scale = compat.attention_geometry(attn)
    batch, length, _ = hidden.shape
    q = attn.q_proj(hidden[:, :1]).view(batch, 1, num_heads, head_dim).transpose(1, 2)  # (N, h, 1, hd)
    k = attn.k_proj(hidden).view(batch, length, num_heads, head_dim).transpose(1, 2)  # (N, h, 1+n, hd)
    scores = (q.float() @ k.float().transpose(-1, -2)) * scale  # (N, h, 1, 1+n)
    return scores.softmax(-1)[:, :, 0]


def cls_attention_row(attn: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """CLS->patch attention of ``attn`` on its input ``hidden`` (N, 1+n, d), averaged over heads: (N, n)
    float32 (FasterVLM's ``attentions[-2][:, :, 0, 1:].mean(1)``)."""
    return cls_attention_heads(attn, hidden)[:, :, 1:].mean(1)


class ClsAttentionHook:
    """Context manager capturing, in one tower pass, the CLS attention rows per head of one vision
    encoder layer, that layer's ``k_proj`` output, and the last layer's ``q_proj``/``k_proj`` outputs."""

    def __init__(self, layer: torch.nn.Module, last: torch.nn.Module | None = None):
        self.attn = layer.self_attn
        self.last = (last or layer).self_attn
        self.rows: list[torch.Tensor] = []
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []

    def _hook(self, module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        self.rows.append(cls_attention_heads(module, hidden))

    def _keep(self, name):
        def hook(module, args, output):
            self.outputs[name] = output
        return hook

    def __enter__(self):
        self._handles = [
            self.attn.register_forward_pre_hook(self._hook, with_kwargs=True),
            self.attn.k_proj.register_forward_hook(self._keep("keys")),
            self.last.k_proj.register_forward_hook(self._keep("last_keys")),
            self.last.q_proj.register_forward_hook(self._keep("last_query")),
        ]
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()


@torch.no_grad()
def encode(model, pixel_values: torch.Tensor, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor, TowerStates]:
    """Encode images (N, 3, H, W) -> projected patch tokens (N, n, d_llm), CLS attention (N, n) and the
    ``TowerStates`` of the same pass.

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
    num_heads, head_dim, _ = compat.attention_geometry(layer.self_attn)
    features, attentions, states = [], [], []
    for start in range(0, pixel_values.shape[0], chunk):
        pixels = pixel_values[start : start + chunk].to(tower.device, tower.dtype)
        with ClsAttentionHook(layer, layers[-1]) as hook:
            out = tower(pixels, output_hidden_states=True, return_dict=True)
        hidden = out.hidden_states[feature_layer]  # (N, 1+n, d_vision)
        features.append(proj(hidden[:, 1:]))
        attentions.append(hook.rows[0][:, :, 1:].mean(1))
        keys = hook.outputs["keys"]
        states.append(TowerStates(
            hidden=hidden,
            keys=keys.view(*keys.shape[:2], num_heads, head_dim).transpose(1, 2),
            cls_rows=hook.rows[0],
            last_keys=hook.outputs["last_keys"],
            last_query=hook.outputs["last_query"][:, 0],
        ))
    return torch.cat(features), torch.cat(attentions), TowerStates.cat(states)
