"""Greedy decoding of a left-padded batch of input embeddings through the LLaVA language model."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.model import compat
from pipeline.model.timing import now_ms


@dataclass
class Generated:
    """Greedy result: ``tokens`` (B, T) long (``pad_id`` after a sample's EOS), ``first_logits``
    (B, V) float32 of the first generated step, wall times in ms."""

    tokens: torch.Tensor
    first_logits: torch.Tensor
    prefill_ms: float
    decode_ms: float


class PlainRunner:
    """Stock path: the decoder stack with one KV cache, mask grown by one column per step."""

    def __init__(self, model):
        self.lm, self.head = compat.language_model(model), compat.lm_head(model)
        self.cache = compat.new_cache(model)
        self.mask = None

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Run (B, L, d) through the LM; returns the last position's logits (B, V) float32."""
        self.mask = mask
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True,
                      **compat.cache_kwargs(self.lm, self.cache))
        self.cache = compat.output_cache(out)
        return self.head(out.last_hidden_state[:, -1]).float()

    def step(self, embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """One decode step for (B, 1, d) at ``positions`` (B, 1); returns logits (B, V) float32."""
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        out = self.lm(inputs_embeds=embeds, attention_mask=self.mask, position_ids=positions, use_cache=True,
                      **compat.cache_kwargs(self.lm, self.cache))
        self.cache = compat.output_cache(out)
        return self.head(out.last_hidden_state[:, -1]).float()


@torch.no_grad()
def greedy(model, embeds, mask, positions, max_new_tokens: int, eos_id: int, pad_id: int, runner=None) -> Generated:
    """Greedy decoding from ``embeds`` (B, L, d) with ``mask`` and ``positions`` (B, L).

    Each sample stops at its own EOS (later steps emit ``pad_id``); the loop ends when all samples
    stopped or after ``max_new_tokens``. ``runner`` (default ``PlainRunner``) owns the forward
    passes and the cache; in-LLM pruning passes ``layer_prune.LayerPruneRunner``.
    """
    runner = runner or PlainRunner(model)
    embed = compat.input_embeddings(model)
    start = now_ms(embeds.device)
    logits = runner.prefill(embeds, mask, positions)
    first_logits = logits
    prefill_done = now_ms(embeds.device)
    finished = torch.zeros(embeds.shape[0], dtype=torch.bool, device=embeds.device)
    next_pos = positions[:, -1:] + 1  # (B, 1)
    tokens = []
    for step in range(max_new_tokens):
        token = logits.argmax(-1)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        tokens.append(token)
        finished |= token == eos_id
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        logits = runner.step(embed(token)[:, None], next_pos)
        next_pos = next_pos + 1
    tokens = torch.stack(tokens, dim=1)
    return Generated(tokens, first_logits, prefill_done - start, now_ms(embeds.device) - prefill_done)
