"""The one shim for version-dependent access to transformers LLaVA internals.

Everything else in ``pipeline.model`` reads model parts through these functions, so a change of
attribute names across transformers releases is fixed here only. Written against transformers 5.x
(``model.model.{vision_tower, multi_modal_projector, language_model}``, ``model.lm_head``, the
cache keyword ``cache`` that replaced ``past_key_values``); 4.x names are accepted as fallbacks.
"""
from __future__ import annotations

import functools
import inspect

import torch


def _inner(model):
    return getattr(model, "model", model)


def vision_tower(model) -> torch.nn.Module:
    inner = _inner(model)
    return getattr(inner, "vision_tower", None) or model.vision_tower


def projector(model) -> torch.nn.Module:
    inner = _inner(model)
    return getattr(inner, "multi_modal_projector", None) or model.multi_modal_projector


def language_model(model) -> torch.nn.Module:
    """The decoder stack without the LM head (``LlamaModel``)."""
    inner = _inner(model)
    lm = getattr(inner, "language_model", None) or model.language_model
    return getattr(lm, "model", lm)


def lm_head(model) -> torch.nn.Module:
    return model.get_output_embeddings()


def input_embeddings(model) -> torch.nn.Embedding:
    return model.get_input_embeddings()


def image_newline(model) -> torch.Tensor:
    """LLaVA-NeXT's learned row-end embedding, shape (d_llm,)."""
    inner = _inner(model)
    return inner.image_newline if hasattr(inner, "image_newline") else model.image_newline


def image_token_id(config) -> int:
    value = getattr(config, "image_token_id", None)
    return value if value is not None else config.image_token_index


def vision_encoder_layers(model) -> torch.nn.ModuleList:
    tower = vision_tower(model)
    body = getattr(tower, "vision_model", tower)
    return body.encoder.layers


def decoder_layers(model) -> torch.nn.ModuleList:
    return language_model(model).layers


def rotary_embedding(model) -> torch.nn.Module:
    return language_model(model).rotary_emb


def final_norm(model) -> torch.nn.Module:
    return language_model(model).norm


@functools.cache
def _cache_keyword(cls) -> str:
    params = inspect.signature(cls.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def cache_kwargs(module: torch.nn.Module, cache) -> dict:
    """``{keyword: cache}`` for ``module.forward`` (``cache`` in 5.x, ``past_key_values`` before)."""
    return {_cache_keyword(type(module)): cache}


def output_cache(output):
    """The KV cache carried by a model output."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def new_cache(model):
    from transformers import DynamicCache

    try:
        return DynamicCache(config=language_model(model).config)
    except TypeError:
        return DynamicCache()


def select_cache_rows(cache, index: torch.Tensor) -> None:
    """Keep only batch rows ``index`` of a KV cache, in place, in every layer."""
    cache.batch_select_indices(index)


def attention_geometry(attn: torch.nn.Module) -> tuple[int, int, float]:
    """(num_heads, head_dim, softmax scale) of a CLIP/SigLIP-style attention module."""
    num_heads = getattr(attn, "num_heads", None) or attn.config.num_attention_heads
    head_dim = getattr(attn, "head_dim", None) or attn.embed_dim // num_heads
    scale = getattr(attn, "scale", None) or getattr(attn, "scaling", None) or head_dim**-0.5
    return num_heads, head_dim, scale


def anyres_helpers():
    """LLaVA-NeXT's ``(get_anyres_image_grid_shape, unpad_image)`` from the installed transformers."""
    from transformers.models.llava_next import modeling_llava_next as m

    return m.get_anyres_image_grid_shape, m.unpad_image


def decoder_attention_geometry(attn: torch.nn.Module) -> tuple[int, float]:
    """(head_dim, softmax scaling) of a Llama-style decoder attention module."""
    return attn.head_dim, attn.scaling


def cached_keys(cache, layer: int) -> torch.Tensor:
    """Keys after RoPE that ``cache`` holds for decoder ``layer``: (B, H_kv, L, hd)."""
    layers = getattr(cache, "layers", None)
    return layers[layer].keys if layers is not None else cache.key_cache[layer]


def norm_eps(norm: torch.nn.Module) -> float:
    """The epsilon of an RMS norm module (``variance_epsilon`` in Llama, ``eps`` elsewhere)."""
    return float(getattr(norm, "variance_epsilon", None) or norm.eps)


def run_decoder_layer(layer, hidden, mask4d, positions, position_embeddings, cache) -> torch.Tensor:
    """One decoder layer on (B, q, d) with an explicit (B, 1, q, k) boolean mask; returns (B, q, d).

    Eager attention adds its mask to the scores, so there the mask becomes 0 / dtype-min."""
    if getattr(layer.self_attn.config, "_attn_implementation", None) == "eager":
        mask4d = torch.zeros(mask4d.shape, dtype=hidden.dtype, device=hidden.device).masked_fill(
            ~mask4d, torch.finfo(hidden.dtype).min)
    out = layer(hidden, attention_mask=mask4d, position_ids=positions, position_embeddings=position_embeddings,
                use_cache=True, **cache_kwargs(layer, cache))
    return out[0] if isinstance(out, tuple) else out
