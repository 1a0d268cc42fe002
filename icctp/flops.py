"""Analytic matmul FLOPs of one LLaVA sample: vision tower, projector, LLM prefill and decode.

Counting rules (every number is a Python ``int``; one multiply-add = 2 FLOPs):
- Only matrix multiplications are counted: linear layers (biases ignored), the patch-embedding
  convolution, attention scores ``Q·Kᵀ`` and attention-weighted values. Norms, softmax,
  activations, rotary embeddings, residual adds and the token selection itself are not counted.
- Vision tower (CLIP): ``patches + 1`` tokens (CLS), bidirectional attention over the full square.
  Only the layers up to ``vision_feature_layer`` are counted (-2 on LLaVA: 23 of CLIP-L's 24 layers),
  since the features come from the penultimate layer and the last layer need not run (the stock
  transformers forward does run it: +1/23 of the vision count). MLP: 2 matrices (GELU).
  Pruning after the tower does not change the vision cost (ToMe, which merges inside it, is counted by
  ``merged_vision_flops``); it is paid once per encoded image, so LLaVA-NeXT pays it
  ``vision_passes`` times (base image + crops: 5 for a 2x2 grid, the default = the largest grid of
  ``image_grid_pinpoints``).
- Projector: 2-layer MLP ``vision_hidden -> llm_hidden -> llm_hidden`` on every patch of every
  pass (selection uses the projected tokens, so the projector sees all of them).
- LLM decoder layer on ``q`` query positions attending ``k`` keys: Q/O projections
  ``2·q·hidden·heads·head_dim`` each, K/V projections ``2·q·hidden·kv_heads·head_dim`` each,
  scores and values ``2·q·k·heads·head_dim`` each, gated SiLU MLP ``3 · 2·q·hidden·intermediate``.
- Prefill: ``P = n_visual + n_text`` positions, causal attention counted as the full ``P×P`` square
  (what a dense kernel computes; a causal flash kernel skips about half of it), plus the LM head on
  the last position only (it yields the first new token) when ``n_new >= 1``.
- Decode: ``n_new - 1`` steps (the first token comes from the prefill); step ``j = 1 .. n_new-1``
  runs one position against a KV cache of ``P + j`` keys (the prompt, earlier tokens and itself),
  plus the LM head on that position.
- Pruning inside the LLM (FastV, DART, SparseVLM): ``layer_tokens`` gives the visual tokens each
  decoder layer processes (all of them up to the pruning layer, the kept and merged ones after), so
  layer ``i`` runs on ``P_i = layer_tokens[i] + n_text`` positions in prefill and attends a KV cache
  of ``P_i + j`` keys at decode step ``j``. The selection itself (the pruner's attention rows,
  similarities, clustering) is not counted.
- Text LLM assumed LLaMA-family (gated MLP, untied LM head of ``vocab × hidden``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class TextShape:
    """LLaMA-family decoder shape."""

    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int


@dataclass(frozen=True)
class VisionShape:
    """CLIP-style vision tower shape; ``layers`` = layers run (up to the feature layer)."""

    layers: int
    hidden: int
    intermediate: int
    image_size: int
    patch_size: int
    channels: int = 3
    passes: int = 1
    keep_cls: bool = False

    @property
    def patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass(frozen=True)
class LlavaShape:
    text: TextShape
    vision: VisionShape
    projector_in: int


VICUNA_7B = TextShape(layers=32, hidden=4096, intermediate=11008, heads=32, kv_heads=32, head_dim=128, vocab=32000)
VICUNA_13B = TextShape(layers=40, hidden=5120, intermediate=13824, heads=40, kv_heads=40, head_dim=128, vocab=32000)
CLIP_L_336 = VisionShape(layers=23, hidden=1024, intermediate=4096, image_size=336, patch_size=14)

MODELS = {
    "llava-1.5-7b": LlavaShape(VICUNA_7B, CLIP_L_336, projector_in=1024),
    "llava-1.5-13b": LlavaShape(VICUNA_13B, CLIP_L_336, projector_in=1024),
    "llava-next-7b": LlavaShape(VICUNA_7B, replace(CLIP_L_336, passes=5), projector_in=1024),
}


def _get(cfg: dict, key: str, where: str) -> Any:
    value = cfg.get(key)
    if value is None:
        raise ValueError(f"model config has no {where}{key}")
    return value


def _layers_run(feature_layer: int | list[int], total: int) -> int:
    """Vision layers needed to produce ``hidden_states[feature_layer]`` (index 0 = embeddings)."""
    layers = feature_layer if isinstance(feature_layer, list) else [feature_layer]
    resolved = [total + 1 + i if i < 0 else i for i in layers]
    if not all(0 <= i <= total for i in resolved):
        raise ValueError(f"vision_feature_layer {feature_layer} is outside a {total}-layer vision tower")
    return max(resolved)


def _shape_from_config(cfg: dict) -> LlavaShape:
    """Shape of a transformers ``LlavaConfig``/``LlavaNextConfig`` given as its ``to_dict()`` form."""
    text, vision = _get(cfg, "text_config", ""), _get(cfg, "vision_config", "")
    heads = _get(text, "num_attention_heads", "text_config.")
    hidden = _get(text, "hidden_size", "text_config.")
    feature_layer = cfg.get("vision_feature_layer")
    if feature_layer is None:
        feature_layer = -2
    image_size = _get(vision, "image_size", "vision_config.")
    passes = 1
    if cfg.get("model_type") == "llava_next":
        pinpoints = _get(cfg, "image_grid_pinpoints", "")
        passes = 1 + max((h // image_size) * (w // image_size) for h, w in pinpoints)
    vision_hidden = _get(vision, "hidden_size", "vision_config.")
    return LlavaShape(
        text=TextShape(
            layers=_get(text, "num_hidden_layers", "text_config."),
            hidden=hidden,
            intermediate=_get(text, "intermediate_size", "text_config."),
            heads=heads,
            kv_heads=text.get("num_key_value_heads") or heads,
            head_dim=text.get("head_dim") or hidden // heads,
            vocab=_get(text, "vocab_size", "text_config."),
        ),
        vision=VisionShape(
            layers=_layers_run(feature_layer, _get(vision, "num_hidden_layers", "vision_config.")),
            hidden=vision_hidden,
            intermediate=_get(vision, "intermediate_size", "vision_config."),
            image_size=image_size,
            patch_size=_get(vision, "patch_size", "vision_config."),
            channels=vision.get("num_channels") or 3,
            passes=passes,
            keep_cls=cfg.get("vision_feature_select_strategy", "default") == "full",
        ),
        projector_in=vision_hidden * (len(feature_layer) if isinstance(feature_layer, list) else 1),
    )


def llava_shape(model: str | Any) -> LlavaShape:
    """Shape of a named model (:data:`MODELS`), a transformers LLaVA config, or its dict form."""
    if isinstance(model, LlavaShape):
        return model
    if isinstance(model, str):
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; known: {', '.join(MODELS)}")
        return MODELS[model]
    if hasattr(model, "to_dict"):
        model = model.to_dict()
    if not isinstance(model, dict):
        raise TypeError(f"model must be a name, a LLaVA config or its dict, got {type(model).__name__}")
    return _shape_from_config(model)


def decoder_layer_flops(text: TextShape, queries: int, keys: int) -> int:
    """One LLM decoder layer on ``queries`` positions attending ``keys`` keys."""
    q_width, kv_width = text.heads * text.head_dim, text.kv_heads * text.head_dim
    projections = 2 * queries * text.hidden * (2 * q_width + 2 * kv_width)
    attention = 2 * 2 * queries * keys * q_width
    mlp = 3 * 2 * queries * text.hidden * text.intermediate
    return projections + attention + mlp


def vision_flops(vision: VisionShape, passes: int) -> int:
    """Vision tower on ``passes`` images: patch embedding + ``vision.layers`` encoder layers."""
    tokens, width = vision.patches + 1, vision.hidden
    patch_embed = 2 * vision.patches * vision.channels * vision.patch_size ** 2 * width
    layer = 2 * tokens * width * 4 * width + 2 * 2 * tokens * tokens * width + 2 * 2 * tokens * width * vision.intermediate
    return passes * (patch_embed + vision.layers * layer)


def projector_flops(shape: LlavaShape, passes: int) -> int:
    """Projector ``in -> hidden -> hidden`` on every selected-layer token of every pass."""
    tokens = passes * (shape.vision.patches + int(shape.vision.keep_cls))
    hidden = shape.text.hidden
    return 2 * tokens * (shape.projector_in * hidden + hidden * hidden)


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def llava_flops(model: str | Any, n_visual: int, n_text: int, n_new: int, *,
                vision_passes: int | None = None, layer_tokens: list[int] | None = None) -> dict[str, int]:
    """FLOPs of answering one sample (see the module docstring for what is counted).

    model: ``"llava-1.5-7b"``, ``"llava-1.5-13b"``, ``"llava-next-7b"``, a transformers LLaVA /
    LLaVA-NeXT config or its ``to_dict()`` form. n_visual: visual tokens entering the LLM (after
    pruning); n_text: text tokens of the prompt; n_new: generated tokens. vision_passes: images
    encoded by the vision tower (default: 1, or base + largest grid for LLaVA-NeXT). layer_tokens:
    visual tokens per decoder layer (one int per layer) when the method prunes inside the LLM;
    default: ``n_visual`` in every layer.
    Returns ``{"vision", "projector", "prefill", "decode", "total"}`` in FLOPs.
    """
    for name, value in (("n_visual", n_visual), ("n_text", n_text), ("n_new", n_new)):
        _check_count(name, value)
    if n_visual + n_text == 0:
        raise ValueError("the prompt is empty: n_visual + n_text must be >= 1")
    shape = llava_shape(model)
    passes = shape.vision.passes if vision_passes is None else vision_passes
    if isinstance(passes, bool) or not isinstance(passes, int) or passes < 1:
        raise ValueError(f"vision_passes must be an int >= 1, got {passes!r}")
    text = shape.text
    if layer_tokens is None:
        layer_tokens = [n_visual] * text.layers
    if len(layer_tokens) != text.layers:
        raise ValueError(f"layer_tokens has {len(layer_tokens)} entries for a {text.layers}-layer language model")
    for value in layer_tokens:
        _check_count("layer_tokens[i]", value)
    lm_head = 2 * text.hidden * text.vocab
    prompts = [tokens + n_text for tokens in layer_tokens]
    prefill = sum(decoder_layer_flops(text, p, p) for p in prompts) + (lm_head if n_new >= 1 else 0)
    decode = sum(sum(decoder_layer_flops(text, 1, p + j) for p in prompts) + lm_head for j in range(1, n_new))
    out = {
        "vision": vision_flops(shape.vision, passes),
        "projector": projector_flops(shape, passes),
        "prefill": prefill,
        "decode": decode,
    }
    out["total"] = sum(out.values())
    return out


def merged_vision_flops(vision: VisionShape, schedule: list[list[int]] | list[int], passes: int = 1,
                        head_dim: int = 64) -> int:
    """Vision tower with ToMe merging (``pipeline.model.tome``): layer l attends over its T_l input
    tokens (projections, scores, values), then removes ``sum(schedule[l])`` tokens, so its MLP runs on
    the rest; each merge round adds its bipartite matching scores ``2·|A|·|B|·head_dim`` (the metric is
    the head-averaged keys). One entry of ``schedule`` per layer run (an int or a list of rounds).
    With no merges this equals ``vision_flops``."""
    if len(schedule) != vision.layers:
        raise ValueError(f"schedule has {len(schedule)} layers, the tower runs {vision.layers}")
    width = vision.hidden
    tokens = vision.patches + 1
    total = 2 * vision.patches * vision.channels * vision.patch_size ** 2 * width
    for rounds in schedule:
        rounds = [rounds] if isinstance(rounds, int) else rounds
        total += 2 * tokens * width * 4 * width + 2 * 2 * tokens * tokens * width
        for r in rounds:
            if r > 0:
                total += 2 * ((tokens + 1) // 2) * (tokens // 2) * head_dim
                tokens -= r
        total += 2 * 2 * tokens * width * vision.intermediate
    return passes * total
