"""Methods that act on the vision tower's output, before the projector (VisionZip, PruMerge, PruMerge+).

Each is the registry's function for its method (``pipeline.methods``, ``needs`` = ``tower_states``):
``fn(states, budget, **options) -> TowerSelection``, on a batch of G tower passes (one image of
LLaVA-1.5, the base image or one crop of LLaVA-NeXT). ``budget`` is the tokens the method gives the
language model per pass (the adapter scales the per-576 budget to the pass's patch count); the
pure functions in ``icctp`` do the work. The adapter projects the returned tokens and splices them,
in the order returned, where the image's tokens go.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from icctp.prumerge import prumerge as prumerge_tokens
from icctp.prumerge import prumerge_chosen
from icctp.prumerge import prumerge_plus as prumerge_plus_tokens
from icctp.visionzip import DOMINANT_SHARE, visionzip_compress, visionzip_split
from pipeline.model.vision import TowerStates


@dataclass
class TowerSelection:
    """Per pass: tokens (m_g, D) pre-projector, in the order the language model sees them, and kept
    (k_g,) int64 sorted patch indices (0 .. n-1) that reach it unmerged (for reports), or None."""

    tokens: list[torch.Tensor]
    kept: list[torch.Tensor | None]


def visionzip(states: TowerStates, budget: int, dominant_share: float = DOMINANT_SHARE) -> TowerSelection:
    """VisionZip on layer -2: ``dominant = max(1, floor(dominant_share * budget))`` tokens CLS
    included, plus ``budget - dominant`` contextual ones; the LM sees exactly ``budget`` tokens
    (54 + 10 at 64). kept = the dominant patches (CLS is not a patch)."""
    dominant, contextual = visionzip_split(budget, dominant_share)
    tokens, kept = visionzip_compress(states.hidden, states.cls_rows, states.keys, dominant, contextual)
    return TowerSelection(list(tokens), [k[1:] - 1 for k in kept])


def prumerge_plus(states: TowerStates, budget: int, adaptive: bool = True, ratio: float | None = None) -> TowerSelection:
    """PruMerge+: the official adaptive count per image (``budget`` is then nominal), or with
    ``adaptive`` False the fixed-ratio branch at ``ratio`` (None: ``budget / (2 n)``, which gives
    ``budget + 1`` tokens where the official branch allows it, e.g. 129 at 128, 65 at 64, 33 at 32)."""
    n = states.hidden.shape[1] - 1
    ratio = budget / (2 * n) if ratio is None else ratio
    tokens = prumerge_plus_tokens(states.hidden[:, 1:], states.last_keys, states.last_query, adaptive, ratio)
    return TowerSelection(tokens, _chosen_patches(states, adaptive, ratio, plus=True))


def prumerge(states: TowerStates, budget: int, adaptive: bool = True, ratio: float | None = None) -> TowerSelection:
    """PruMerge: the official adaptive count per image (``budget`` is then nominal), or with
    ``adaptive`` False the top ``int(n * ratio)`` (None: ``budget / n``, ``budget + 1`` tokens)."""
    n = states.hidden.shape[1] - 1
    ratio = budget / n if ratio is None else ratio
    tokens = prumerge_tokens(states.hidden[:, 1:], states.last_keys, states.last_query, adaptive, ratio)
    return TowerSelection(tokens, _chosen_patches(states, adaptive, ratio, plus=False))


def _chosen_patches(states, adaptive, ratio, plus) -> list[torch.Tensor]:
    """The distinct patches each pass's tokens are centred on, sorted (the choice the merge made)."""
    return [torch.unique(c) for c in prumerge_chosen(states.last_keys, states.last_query, adaptive, ratio, plus)]
