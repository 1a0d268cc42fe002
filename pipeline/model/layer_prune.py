"""The layer-K seam: run the decoder layer by layer and let an in-LLM pruner drop visual tokens.

A pruner (``icctp.layer_pruners``) declares the layers whose output it prunes, what it needs there
and its position rule. During prefill this runner runs the decoder stack one layer at a time; after
each pruning layer it collects exactly what the pruner asked for (the attention probabilities of
the last real query or of every query after the visual span, recomputed from the layer's own
queries and its cached keys after RoPE; the cached keys; the final norm's weight; the layer-0
input once), hands them over for the samples that share a visual count, and applies the answer:
kept tokens in their order, the pruner's merged tokens right after a sample's kept visual tokens,
positions kept (``original``) or counted anew (``repack``), the batch re-left-padded. Layers run
after a pruning layer see only the kept tokens, so the KV cache holds, per layer, exactly the
tokens that layer saw; each decode step attends every layer with its own key mask and (for
``repack``) its own next position.

Bookkeeping per sample: ``layer_tokens`` (B, n_layers) visual tokens each layer processed,
``kept`` the original visual indices left after the last pruning layer (merged tokens excluded),
``n_merged`` the merged tokens among them.
"""
from __future__ import annotations

import torch

from icctp.layer_pruners import LayerInputs
from pipeline.model import compat

MERGED = -2
TEXT = -1


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _mask4d(key_mask: torch.Tensor, queries: int) -> torch.Tensor:
    """Boolean (B, 1, q, k) mask: causal over the last ``queries`` keys, pads hidden; pad queries see themselves."""
    keys = key_mask.shape[1]
    q_index = torch.arange(keys - queries, keys, device=key_mask.device)[:, None]
    k_index = torch.arange(keys, device=key_mask.device)[None]
    allowed = (k_index <= q_index)[None] & key_mask.bool()[:, None]
    allowed |= (k_index == q_index)[None]
    return allowed[:, None]


def last_queries_attention(queries, keys, rope, key_mask, scaling: float) -> torch.Tensor:
    """Causal attention probabilities (B, H, Q, L) float32 of the last Q of (B, H, L, hd) ``queries``
    (before RoPE) over ``keys`` (B, H_kv, L, hd, after RoPE), pads masked."""
    cos, sin = (t[:, -queries.shape[2]:].unsqueeze(1) for t in rope)
    q = queries * cos + _rotate_half(queries) * sin
    k = keys.repeat_interleave(q.shape[1] // keys.shape[1], dim=1)
    scores = (q.float() @ k.float().transpose(-1, -2)) * scaling  # (B, H, Q, L)
    allowed = _mask4d(key_mask, q.shape[2])
    return scores.masked_fill(~allowed, float("-inf")).softmax(-1)


class LayerPruneRunner:
    """``generation.greedy`` runner for an in-LLM ``pruner``.

    image_start, n_image: per sample, the first visual position in its unpadded ids and its visual
    count (as assembled, every visual token present).
    """

    row_state = ("masks", "shifts")  # per segment, batch-first: kept in step with the cache when rows finish

    def __init__(self, model, pruner, image_start: list[int], n_image: list[int]):
        self.layers = compat.decoder_layers(model)
        self.pruner = pruner
        self.prune_at = set(pruner.layers)
        if max(self.prune_at) >= len(self.layers) - 1:
            raise ValueError(f"pruning after layer {max(self.prune_at)} leaves no layer of the "
                             f"{len(self.layers)}-layer language model to run on the kept tokens")
        self.starts, self.counts = list(image_start), list(n_image)
        self.rotary, self.norm = compat.rotary_embedding(model), compat.final_norm(model)
        self.head = compat.lm_head(model)
        self.cache = compat.new_cache(model)
        self.segment = [0] * len(self.layers)  # layer -> index of its key mask / positions
        self.masks: list[torch.Tensor] = []
        self.shifts: list[torch.Tensor] = []

    def _run(self, index, hidden, mask4, positions, rope):
        return compat.run_decoder_layer(self.layers[index], hidden, mask4, positions, rope, self.cache)

    def prefill(self, embeds: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        batch, length, _ = embeds.shape
        device = mask.device
        pad = length - mask.sum(1)
        image_start = pad + torch.tensor(self.starts, device=device)
        n_image = torch.tensor(self.counts, device=device)
        self.pruner.begin(embeds, mask, image_start, n_image)
        index = torch.arange(length, device=device)
        offset = index[None] - image_start[:, None]
        origin = torch.where((offset >= 0) & (offset < n_image[:, None]), offset, TEXT)  # (B, L)
        self.layer_tokens = torch.zeros(batch, len(self.layers), dtype=torch.long, device=device)
        hidden, rope = embeds, self.rotary(embeds, positions)
        # per segment: key mask, and the shift of its positions from the prompt's (repack: kept tokens only)
        self.masks, self.shifts = [mask], [torch.zeros_like(positions[:, -1:])]
        mask4 = _mask4d(mask, length)
        for i in range(len(self.layers)):
            captured = {}
            handle = None
            if i in self.prune_at and self.pruner.needs & {"attention_last", "attention_text"}:
                handle = self.layers[i].self_attn.q_proj.register_forward_hook(
                    lambda module, args, out, store=captured: store.__setitem__("q", out))
            try:
                hidden = self._run(i, hidden, mask4, positions, rope)
            finally:
                if handle is not None:
                    handle.remove()
            self.segment[i] = len(self.masks) - 1
            self.layer_tokens[:, i] = n_image
            if i in self.prune_at:
                inputs = self._collect(i, hidden, mask, image_start, n_image, captured.get("q"), rope)
                hidden, mask, positions, image_start, n_image, origin = self._apply(
                    i, inputs, hidden, mask, positions, image_start, n_image, origin)
                rope, mask4 = self.rotary(hidden, positions), _mask4d(mask, hidden.shape[1])
                self.masks.append(mask)
                self.shifts.append(mask.sum(1, keepdim=True) - self.masks[0].sum(1, keepdim=True)
                                   if self.pruner.positions == "repack" else self.shifts[0])
        visual = origin >= 0
        self.kept = [origin[b][visual[b]].sort().values for b in range(batch)]
        self.n_merged = [int((origin[b] == MERGED).sum()) for b in range(batch)]
        return self.head(self.norm(hidden[:, -1])).float()

    def _collect(self, layer, hidden, mask, image_start, n_image, q, rope) -> dict:
        """What the pruner asked for at ``layer``, for the whole batch (sliced per group later)."""
        needs = self.pruner.needs
        out = {"hidden": hidden}
        attn = self.layers[layer].self_attn
        keys = compat.cached_keys(self.cache, layer) if needs & {"keys", "attention_last", "attention_text"} else None
        if "keys" in needs:
            out["keys"] = keys
        if q is not None:
            head_dim, scaling = compat.decoder_attention_geometry(attn)
            queries = 1
            if "attention_text" in needs:
                queries = hidden.shape[1] - int((image_start + n_image).min())
            q = q[:, -queries:].view(hidden.shape[0], queries, -1, head_dim).transpose(1, 2)
            out["attention"] = last_queries_attention(q, keys, rope, mask, scaling)
        if "final_norm" in needs:
            out["norm_weight"], out["norm_eps"] = self.norm.weight, compat.norm_eps(self.norm)
        return out

    def _apply(self, layer, inputs, hidden, mask, positions, image_start, n_image, origin):
        """Ask the pruner per group of equal visual count; rebuild the left-padded batch."""
        batch = hidden.shape[0]
        keep = torch.zeros_like(mask, dtype=torch.bool)
        merged: list[torch.Tensor | None] = [None] * batch
        for n in sorted({int(n) for n in n_image}):
            rows = (n_image == n).nonzero().flatten()
            sliced = {k: (v[rows] if isinstance(v, torch.Tensor) and k != "norm_weight" else v)
                      for k, v in inputs.items()}
            decision = self.pruner.prune(LayerInputs(layer=layer, mask=mask[rows],
                                                     image_start=image_start[rows], n_image=n, rows=rows, **sliced))
            keep[rows] = decision.keep
            for j, r in enumerate(rows.tolist()):
                if decision.merged is not None and decision.merged[j] is not None:
                    merged[r] = decision.merged[j]
        pieces = []
        for b in range(batch):
            kept = keep[b].nonzero().flatten()
            split = int((kept < image_start[b] + n_image[b]).sum())
            extra = merged[b] if merged[b] is not None else hidden.new_zeros(0, hidden.shape[-1])
            n_extra = extra.shape[0]
            rows_h = torch.cat([hidden[b, kept[:split]], extra.to(hidden.dtype), hidden[b, kept[split:]]])
            rows_o = torch.cat([origin[b, kept[:split]], origin.new_full((n_extra,), MERGED), origin[b, kept[split:]]])
            rows_p = torch.cat([positions[b, kept[:split]], positions.new_zeros(n_extra), positions[b, kept[split:]]])
            new_start = int((kept < image_start[b]).sum())
            new_count = split - new_start + n_extra
            pieces.append((rows_h, rows_o, rows_p, new_start, new_count))
        width = max(p[0].shape[0] for p in pieces)
        new_hidden = hidden.new_zeros(batch, width, hidden.shape[-1])
        new_mask = torch.zeros(batch, width, dtype=mask.dtype, device=mask.device)
        new_origin = origin.new_full((batch, width), TEXT)
        new_positions = positions.new_zeros(batch, width)
        for b, (rows_h, rows_o, rows_p, _, _) in enumerate(pieces):
            n = rows_h.shape[0]
            new_hidden[b, width - n:], new_origin[b, width - n:], new_mask[b, width - n:] = rows_h, rows_o, 1
            if self.pruner.positions == "repack":
                new_positions[b, width - n:] = torch.arange(n, device=mask.device)
            else:
                new_positions[b, width - n:] = rows_p
        pad = width - torch.tensor([p[0].shape[0] for p in pieces], device=mask.device)
        new_start = pad + torch.tensor([p[3] for p in pieces], device=mask.device)
        new_count = torch.tensor([p[4] for p in pieces], device=mask.device)
        return new_hidden, new_mask, new_positions, new_start, new_count, new_origin

    def step(self, embeds: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        ones = self.masks[0].new_ones(embeds.shape[0], 1)
        self.masks = [torch.cat([m, ones], dim=1) for m in self.masks]
        masks4 = [_mask4d(m, 1) for m in self.masks]
        shifted = [positions + shift for shift in self.shifts]
        ropes = [self.rotary(embeds, p) for p in shifted]
        hidden = embeds
        for i in range(len(self.layers)):
            s = self.segment[i]
            hidden = self._run(i, hidden, masks4[s], shifted[s], ropes[s])
        return self.head(self.norm(hidden[:, -1])).float()
