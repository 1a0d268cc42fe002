"""The model side of the adapter as four public steps: encode → select → assemble → generate.

``VLM.answer`` composes them on a preprocessed batch; benchmarks and checks call them one by one
to time each. Budgets are per 576 visual tokens: an image with n feature tokens keeps
``icctp.budget.scaled_budget(budget, n, 576)`` of them (LLaVA-1.5: ``min(budget, 576)``), split
over its grids by ``split_budget``; LLaVA-NeXT newline tokens are kept on top and counted in
``n_kept``. Kept positions index the image's visual sequence (as the stock model splices it);
clusters (icctp only) align with them: cluster index, -1 for global preselection (and grids kept
whole), -2 for NeXT newlines. Merged tokens (visionzip_proj) follow the kept ones.

How a method is called follows its registry entry's ``needs`` (``pipeline.methods``), never its name:
- ``tower_states``: the method acts on the tower's output before the projector, per tower pass
  (``pipeline.model.tower_methods``); its tokens are projected at assembly and replace the image's
  visual tokens (LLaVA-NeXT: base then crops, without newline tokens);
- ``merging_encoder``: the method runs inside the tower (ToMe, ``encode_merged``); nothing is pruned after;
- otherwise the method selects among the projected tokens per grid, given ``cls_attn`` and, where it
  needs them, ``seeds`` and ``centers``/``center_mask`` (``noun_centers``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from icctp.budget import scaled_budget, split_budget
from icctp.nouns import pad_centers
from pipeline.methods import get_method
from pipeline.model import compat, families, generation
from pipeline.model.assemble import left_pad, splice
from pipeline.model.generation import Generated
from pipeline.model.vision import TowerStates
from pipeline.model.visual import ImagePixels, VisualTokens

GLOBAL_CLUSTER = -1
FIXED_CLUSTER = -2


@dataclass
class Kept:
    """One sample's selection.

    indices: (k,) int64 sorted positions in ``VisualTokens.tokens``; clusters: (k,) int64 aligned
    with them (icctp) or None; merged: (m, d_llm) tokens appended after the kept ones (visionzip_proj)
    or None. The language model sees k + m visual tokens (``n_kept``). vision_tokens: (s, d_vision)
    pre-projector tokens that the language model sees (projected) INSTEAD of the indexed ones, for
    a method acting on the tower's output; ``indices`` then only records the patches they keep
    unmerged, and ``n_kept`` = s.
    """

    indices: torch.Tensor
    clusters: torch.Tensor | None = None
    merged: torch.Tensor | None = None
    vision_tokens: torch.Tensor | None = None

    @property
    def n_kept(self) -> int:
        if self.vision_tokens is not None:
            return int(self.vision_tokens.shape[0])
        return int(self.indices.numel()) + (0 if self.merged is None else int(self.merged.shape[0]))


@dataclass
class Assembled:
    """A left-padded batch for the language model.

    embeds: (B, L, d_llm) text embeddings with each sample's kept visual tokens spliced at its
    ``<image>``; mask: (B, L) int64, 0 on pads; positions: (B, L) int64 counted over real tokens.
    """

    embeds: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor


def encode(model, images: list[ImagePixels]) -> list[VisualTokens]:
    """Vision tower → selected layer → projector for distinct images, with the CLS attention of that
    layer; one ``VisualTokens`` per image (LLaVA-NeXT: packed base + crops with newlines)."""
    return families.family(model.config).visual_tokens(model, images)


def encode_merged(model, images: list[ImagePixels], method: str, budget: int) -> list[VisualTokens]:
    """The vision step of a method that merges inside the tower (``merging_encoder``, e.g. ToMe): its
    registry function ``fn(model, images, budget)`` runs one merging tower pass per distinct image."""
    return get_method(method).function()(model, images, budget)


def select(visuals: list[VisualTokens], method: str, budget: int, *, seeds: list[int],
           centers: list[torch.Tensor] | None = None, **params) -> list[Kept]:
    """Kept visual tokens per sample with ``method`` (a ``pipeline.methods`` entry).

    visuals: one per sample; budget: visual tokens per 576 (int >= 1); seeds: per-sample seeds
    (random); centers: per-sample (K_i, d_llm) noun centers, for a method that needs
    ``noun_centers``. Grids of equal size and budget across the batch share one
    ``icctp.baselines.select`` call. The unpruned model and a method that prunes inside the LLM
    keep every visual token here.
    """
    spec = get_method(method)
    if not spec.prunes or spec.in_llm or "merging_encoder" in spec.needs:
        return [Kept(torch.arange(v.n_visual, device=v.tokens.device)) for v in visuals]
    if "tower_states" in spec.needs:
        return _select_on_tower(visuals, spec.function(), budget, params)
    function = spec.function()
    per_row = [[] for _ in visuals]  # (grid, kept positions, clusters | None, merged | None)
    jobs = {}
    for r, visual in enumerate(visuals):
        sizes = [int(g.numel()) for g in visual.grids]
        total = scaled_budget(budget, visual.n_features)
        for g, (grid, grid_budget) in enumerate(zip(visual.grids, split_budget(total, sizes))):
            if grid_budget >= grid.numel():
                per_row[r].append((g, grid, None, None))
            else:
                jobs.setdefault((int(grid.numel()), grid_budget), []).append((r, g))
    padded = mask = None
    if jobs and "noun_centers" in spec.needs:
        device = visuals[0].tokens.device
        padded, mask = pad_centers(centers)
        padded, mask = padded.to(device), mask.to(device)
    for (_, grid_budget), members in jobs.items():
        tokens = torch.stack([visuals[r].tokens[visuals[r].grids[g]] for r, g in members])  # (G, n, d)
        cls_attn = torch.stack([visuals[r].grid_cls[g] for r, g in members])  # (G, n)
        kwargs = {}
        if "seeds" in spec.needs:
            kwargs["seeds"] = [(seeds[r] + 7919 * g) % 2**31 for r, g in members]
        if padded is not None:
            index = torch.tensor([r for r, _ in members], device=padded.device)
            kwargs.update(centers=padded[index], center_mask=mask[index])
        selection = function(tokens.float(), cls_attn.float(), grid_budget, **kwargs, **params)
        clusters = getattr(selection, "clusters", None)
        merged = getattr(selection, "merged", None)
        for j, (r, g) in enumerate(members):
            grid = visuals[r].grids[g]
            per_row[r].append((
                g,
                grid[selection[j].to(grid.device)],
                None if clusters is None else clusters[j],
                None if merged is None else merged[j],
            ))
    return [_combine(visual, sorted(parts, key=lambda p: p[0])) for visual, parts in zip(visuals, per_row)]


def _select_on_tower(visuals: list[VisualTokens], function, budget: int, params: dict) -> list[Kept]:
    """A ``tower_states`` method on every tower pass of the batch in one call, ``scaled_budget(budget,
    n)`` per pass; each sample's passes' tokens in pass order become its ``vision_tokens``."""
    states = TowerStates.cat([v.states for v in visuals])
    n = states.hidden.shape[1] - 1
    chosen = function(states, scaled_budget(budget, n), **params)
    out, start = [], 0
    for visual in visuals:
        count = visual.states.hidden.shape[0]
        tokens = torch.cat(chosen.tokens[start : start + count])
        positions = [visual.pass_positions[p][k.to(visual.pass_positions.device)]
                     for p, k in enumerate(chosen.kept[start : start + count]) if k is not None]
        start += count
        kept = torch.cat(positions) if positions else visual.fixed[:0]
        out.append(Kept(torch.unique(kept[kept >= 0]), vision_tokens=tokens))
    return out


def _combine(visual: VisualTokens, parts) -> Kept:
    """Merge per-grid picks with the fixed positions: sorted kept positions, aligned clusters (when
    the method reports clusters), merged tokens."""
    kept = torch.cat([p[1] for p in parts] + [visual.fixed])
    clusters = None
    if any(p[2] is not None for p in parts):
        pieces = [p[2].to(kept.device) if p[2] is not None else torch.full_like(p[1], GLOBAL_CLUSTER) for p in parts]
        clusters = torch.cat(pieces + [torch.full_like(visual.fixed, FIXED_CLUSTER)])
    order = torch.argsort(kept)
    merged = [p[3] for p in parts if p[3] is not None and p[3].numel()]
    return Kept(kept[order], None if clusters is None else clusters[order], torch.cat(merged) if merged else None)


def assemble(model, text_ids: list[list[int]], image_pos: list[int], visuals: list[VisualTokens],
             kept: list[Kept]) -> Assembled:
    """Embed each sample's text ids (L_i), replace its ``<image>`` id at ``image_pos`` by its kept
    (then merged) visual tokens, and left-pad the batch."""
    embed = compat.input_embeddings(model)
    device = embed.weight.device
    sequences = []
    for ids, pos, visual, keep in zip(text_ids, image_pos, visuals, kept):
        text = embed(torch.tensor(ids, device=device))  # (L, d)
        if keep.vision_tokens is not None:
            tokens = compat.projector(model)(keep.vision_tokens)
        else:
            tokens = visual.tokens[keep.indices]
        if keep.merged is not None:
            tokens = torch.cat([tokens, keep.merged.to(tokens.dtype)])
        sequences.append(splice(text, pos, tokens))
    return Assembled(*left_pad(sequences))


def generate(model, inputs: Assembled, max_new_tokens: int, eos_id: int, pad_id: int, runner=None) -> Generated:
    """Greedy decoding of an assembled batch (``generation.greedy``; ``runner``: a ``layer_prune`` runner or None)."""
    return generation.greedy(model, inputs.embeds, inputs.mask, inputs.positions, max_new_tokens, eos_id, pad_id,
                             runner=runner)
