"""FastV (Chen et al. 2024): prune image tokens inside the LLM after layer K by the last token's attention.

Layers ``0..K-1`` see the full sequence. At layer ``K-1`` a pre-hook computes the last (real)
token's attention to every key, averaged over heads (RoPE and GQA as in ``LlamaAttention``); each
sample keeps its ``R`` image tokens with the highest attention (ties to the lower index) plus all
text tokens, in their original order and with their original position ids, re-left-padded. Layers
``K..`` run on the reduced sequence. The KV cache is consistent through decoding: layers below K
keep full-length keys, layers from K on keep the reduced keys, and each decode step attends with
the matching per-layer mask. ``R >= n`` keeps everything (same tokens as the unpruned model).
"""
from __future__ import annotations

import torch

from pipeline.model import compat


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos.unsqueeze(1) + _rotate_half(x) * sin.unsqueeze(1)


def last_token_attention(attn, hidden, position_embeddings, key_mask) -> torch.Tensor:
    """Attention of the last query of ``hidden`` (B, L, d) to all keys, mean over heads: (B, L) float32."""
    cos, sin = position_embeddings  # (B, L, hd)
    batch, length, _ = hidden.shape
    head_dim, scaling = compat.decoder_attention_geometry(attn)
    q = attn.q_proj(hidden[:, -1:]).view(batch, 1, -1, head_dim).transpose(1, 2)  # (B, h, 1, hd)
    k = attn.k_proj(hidden).view(batch, length, -1, head_dim).transpose(1, 2)  # (B, h_kv, L, hd)
    q, k = _rope(q, cos[:, -1:], sin[:, -1:]), _rope(k, cos, sin)
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    scores = (q.float() @ k.float().transpose(-1, -2))[:, :, 0] * scaling  # (B, h, L)
    scores = scores.masked_fill(~key_mask.bool()[:, None], float("-inf"))
    return scores.softmax(-1).mean(1)


def _mask4d(key_mask: torch.Tensor, queries: int) -> torch.Tensor:
    """Boolean (B, 1, q, k) mask: causal over the last ``queries`` keys, pads hidden; pad queries see themselves."""
    keys = key_mask.shape[1]
    q_index = torch.arange(keys - queries, keys, device=key_mask.device)[:, None]
    k_index = torch.arange(keys, device=key_mask.device)[None]
    allowed = (k_index <= q_index)[None] & key_mask.bool()[:, None]
    allowed |= (k_index == q_index)[None]
    return allowed[:, None]


class FastVRunner:
    """``generation.greedy`` runner; ``spans[b] = (image_start, n_image, R)`` in sample b's unpadded ids."""

    row_state = ("full_mask", "reduced_mask")  # per-row tensors kept in step with the cache when rows finish

    def __init__(self, model, spans: list[tuple[int, int, int]], K: int = 2):
        self.layers = compat.decoder_layers(model)
        if not 1 <= K < len(self.layers):
            raise ValueError(f"FastV layer K={K} must be in [1, {len(self.layers) - 1}]")
        self.K, self.spans = K, spans
        self.rotary, self.norm = compat.rotary_embedding(model), compat.final_norm(model)
        self.head = compat.lm_head(model)
        self.cache = compat.new_cache(model)
        self.kept: list[torch.Tensor] = []

    def _layer(self, index, hidden, mask4, positions, position_embeddings):
        return compat.run_decoder_layer(self.layers[index], hidden, mask4, positions, position_embeddings, self.cache)

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        hidden, length = embeds, embeds.shape[1]
        rope = self.rotary(hidden, positions)
        mask4 = _mask4d(mask, length)
        captured = {}

        def hook(module, args, kwargs):
            captured["attn"] = last_token_attention(module, kwargs["hidden_states"] if "hidden_states" in kwargs
                                                    else args[0], kwargs["position_embeddings"], mask)

        handle = self.layers[self.K - 1].self_attn.register_forward_pre_hook(hook, with_kwargs=True)
        try:
            for i in range(self.K):
                hidden = self._layer(i, hidden, mask4, positions, rope)
        finally:
            handle.remove()
        keep_rows = self._keep(captured["attn"], mask)
        width = max(int(rows.numel()) for rows in keep_rows)
        index = torch.zeros(len(keep_rows), width, dtype=torch.long, device=mask.device)
        self.reduced_mask = torch.zeros_like(index)
        for b, rows in enumerate(keep_rows):
            index[b, width - rows.numel():] = rows
            self.reduced_mask[b, width - rows.numel():] = 1
        hidden = torch.gather(hidden, 1, index[..., None].expand(-1, -1, hidden.shape[-1]))
        hidden = hidden * self.reduced_mask[..., None].to(hidden.dtype)
        positions = torch.gather(positions, 1, index)
        rope = self.rotary(hidden, positions)
        mask4 = _mask4d(self.reduced_mask, width)
        for i in range(self.K, len(self.layers)):
            hidden = self._layer(i, hidden, mask4, positions, rope)
        self.full_mask = mask
        return self.head(self.norm(hidden[:, -1])).float()

    def _keep(self, attention: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """Padded positions kept per sample: all real text tokens + the top-R image tokens."""
        length = mask.shape[1]
        rows = []
        self.kept = []
        for b, (start, n_image, R) in enumerate(self.spans):
            pad = length - int(mask[b].sum())
            image = torch.arange(pad + start, pad + start + n_image, device=mask.device)
            if R >= n_image:
                chosen = torch.arange(n_image, device=mask.device)
            else:
                scores = attention[b, image]
                order = torch.argsort(-scores, stable=True)
                chosen = order[:R].sort().values
            self.kept.append(chosen)
            text = torch.cat([torch.arange(pad, pad + start, device=mask.device),
                              torch.arange(pad + start + n_image, length, device=mask.device)])
            rows.append(torch.cat([text, image[chosen]]).sort().values)
        return rows

    def step(self, embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        ones = self.full_mask.new_ones(embeds.shape[0], 1)
        self.full_mask = torch.cat([self.full_mask, ones], dim=1)
        self.reduced_mask = torch.cat([self.reduced_mask, ones], dim=1)
        full4, reduced4 = _mask4d(self.full_mask, 1), _mask4d(self.reduced_mask, 1)
        rope = self.rotary(embeds, positions)
        hidden = embeds
        for i in range(len(self.layers)):
            hidden = self._layer(i, hidden, full4 if i < self.K else reduced4, positions, rope)
        return self.head(self.norm(hidden[:, -1])).float()
