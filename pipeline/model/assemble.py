"""Sequence assembly: splice visual tokens into the text embeddings and left-pad a batch."""
from __future__ import annotations

import torch


def splice(text_embeds: torch.Tensor, image_pos: int, visual: torch.Tensor) -> torch.Tensor:
    """Replace the single ``<image>`` embedding at ``image_pos`` of (L, d) by ``visual`` (m, d)."""
    return torch.cat([text_embeds[:image_pos], visual.to(text_embeds.dtype), text_embeds[image_pos + 1 :]])


def left_pad(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad (L_i, d) sequences into ``embeds`` (B, L, d), ``mask`` (B, L) long, ``positions`` (B, L).

    Pads are zero vectors with mask 0; position ids count real tokens only (0 at each sample's first
    real token), so every sample sees exactly the positions it would see alone.
    """
    length = max(seq.shape[0] for seq in sequences)
    ref = sequences[0]
    embeds = ref.new_zeros(len(sequences), length, ref.shape[-1])
    mask = torch.zeros(len(sequences), length, dtype=torch.long, device=ref.device)
    for row, seq in enumerate(sequences):
        embeds[row, length - seq.shape[0] :] = seq
        mask[row, length - seq.shape[0] :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return embeds, mask, positions
