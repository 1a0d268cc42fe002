"""Greedy decoding of a left-padded batch of input embeddings through the LLaVA language model.

Finished rows leave the batch: once a row has emitted EOS, the runner keeps only the rows still
decoding (``select_rows``: every per-row tensor — the KV cache rows of each layer, the attention
masks, the next positions — index-selected on the batch dimension), so one long answer costs one
row's steps, not the whole batch's. A runner that declares no ``row_state`` keeps every row to the
end (finished rows then emit ``pad_id``); the tokens are the same either way.
"""
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


def select_rows(runner, index: torch.Tensor) -> None:
    """Keep only batch rows ``index`` (1-D long) of ``runner``: its KV cache rows in every layer and
    each tensor (or list of tensors) named in its ``row_state`` (batch-first)."""
    compat.select_cache_rows(runner.cache, index)
    for name in runner.row_state:
        value = getattr(runner, name)
        setattr(runner, name, [v[index] for v in value] if isinstance(value, list) else value[index])


class PlainRunner:
    """Stock path: the decoder stack with one KV cache, mask grown by one column per step."""

    row_state = ("mask",)

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
    passes and the cache; in-LLM pruning passes ``layer_prune.LayerPruneRunner``. Rows that stopped
    leave the batch when the runner declares its ``row_state`` (see ``select_rows``).
    """
    runner = runner or PlainRunner(model)
    compact = getattr(runner, "row_state", None) is not None
    embed = compat.input_embeddings(model)
    start = now_ms(embeds.device)
    logits = runner.prefill(embeds, mask, positions)
    first_logits = logits
    prefill_done = now_ms(embeds.device)
    batch = embeds.shape[0]
    rows = torch.arange(batch, device=embeds.device)  # the batch row of each row still in the runner
    finished = torch.zeros(batch, dtype=torch.bool, device=embeds.device)
    next_pos = positions[:, -1:] + 1  # (B, 1)
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=embeds.device)
    steps = 0
    for step in range(max_new_tokens):
        token = logits.argmax(-1)
        token = torch.where(finished, torch.full_like(token, pad_id), token)
        tokens[rows, step] = token
        steps = step + 1
        finished |= token == eos_id
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        if compact and bool(finished.any()):
            index = (~finished).nonzero().squeeze(1)
            select_rows(runner, index)
            rows, token, next_pos, finished = rows[index], token[index], next_pos[index], finished[index]
        logits = runner.step(embed(token)[:, None], next_pos)
        next_pos = next_pos + 1
    return Generated(tokens[:, :steps], first_logits, prefill_done - start, now_ms(embeds.device) - prefill_done)
