"""FastV, DART and SparseVLM as published: the keep decisions they take inside the language model.

Pure, batched torch functions: tensors in, tensors out, no hooks, no model, no state. The model
adapter collects their inputs at the pruning layer and applies their keep masks.

Conventions (shared by all three):

- Batches may be left-padded. ``attention_mask`` (B, L) is 1 on real tokens; ``image_start`` (B,)
  int64 is in padded coordinates; the image span is ``[image_start, image_start + n_image)``; "text
  after the image" is every real token from ``image_start + n_image`` to the end.
- Keep masks are (B, L) bool: True on every real non-image token and every kept image token, False
  on pads and dropped image tokens.
- Scores, softmaxes and norms are computed in float32. Ties in a ranking go to the lower index (the
  official codes use ``topk``, whose tie order is unspecified).

Each function equals the official code named in its docstring on a batch of one; a sample's result
never depends on its batch-mates.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# SparseVLM v1.5 (score.py): visual tokens kept at each pruning layer, per target "retained" count.
SPARSEVLM_SCHEDULE: dict[int, dict[int, int]] = {
    64: {2: 66, 6: 30, 15: 17},
    128: {2: 303, 6: 110, 15: 36},
    192: {2: 300, 6: 200, 15: 110},
}


def _image_index(image_start: torch.Tensor, n_image: int) -> torch.Tensor:
    """(B, n_image) padded positions of each sample's image tokens."""
    return image_start.long()[:, None] + torch.arange(n_image, device=image_start.device)


def _real(attention_mask: torch.Tensor | None, batch: int, length: int, device) -> torch.Tensor:
    if attention_mask is None:
        return torch.ones(batch, length, dtype=torch.bool, device=device)
    return attention_mask.bool()


def _keep_mask(real: torch.Tensor, image: torch.Tensor, kept_image: torch.Tensor) -> torch.Tensor:
    """Real non-image tokens plus the image positions ``image[kept_image]`` (both (B, n) / bool (B, n))."""
    keep = real.clone()
    keep.scatter_(1, image, kept_image)
    return keep


def _top(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` highest ``scores`` per row, highest first, ties to the lower index."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]


# ---------------------------------------------------------------------------------------------- FastV

def fastv_keep(attn_last: torch.Tensor, image_start: torch.Tensor, n_image: int, R: int,
               attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """FastV (pkunlp-icler/FastV @d165972, bundled ``modeling_llama.py``, inplace branch).

    attn_last: (B, H, L) attention probabilities of layer K-1's last real query over all L keys.
    Keeps the top-``R`` image tokens by the mean over heads, plus every real non-image token; the
    kept tokens keep their original positions. ``R >= n_image`` keeps every image token.
    Returns the (B, L) keep mask.
    """
    batch, _, length = attn_last.shape
    if R < 0:
        raise ValueError(f"R must be >= 0, got {R}")
    real = _real(attention_mask, batch, length, attn_last.device)
    image = _image_index(image_start, n_image)
    scores = attn_last.float().mean(1).gather(1, image)  # (B, n_image)
    chosen = torch.zeros_like(scores, dtype=torch.bool)
    chosen.scatter_(1, _top(scores, min(R, n_image)), True)
    return _keep_mask(real, image, chosen)


def fastv_equivalent_R(avg_tokens: int, n_layers: int, K: int, n_image: int) -> int:
    """Image tokens FastV keeps after layer K so that the average over all layers is ``avg_tokens``.

    R = round((n_layers * avg_tokens - K * n_image) / (n_layers - K)) (the equivalent-token
    convention of the SparseVLM and VisionZip tables); 7B (32 layers), K=2: 64 -> 30, 128 -> 98,
    192 -> 166. ``ValueError`` when R falls outside [0, n_image] (the average is unreachable).
    """
    if not 1 <= K < n_layers:
        raise ValueError(f"K={K} must be in [1, {n_layers - 1}] for a {n_layers}-layer language model")
    R = round((n_layers * avg_tokens - K * n_image) / (n_layers - K))
    if not 0 <= R <= n_image:
        low = -(-K * n_image // n_layers)
        raise ValueError(f"an average of {avg_tokens} visual tokens over {n_layers} layers is unreachable when "
                         f"the first {K} layers see all {n_image} (R = {R}; the smallest reachable average is {low})")
    return R


# ----------------------------------------------------------------------------------------------- DART

def _rms_norm(hidden: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    x = hidden.float()
    return weight.float() * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def dart_count(n_image: int, budget: int, pivot_image: int = 4, pivot_text: int = 4) -> int:
    """Image tokens ``dart_keep`` keeps: ``pivot_image + (pivot_image + pivot_text) * (budget // 8)``
    with 8 = the pivot count (64 -> 68, 128 -> 132), at most ``n_image``."""
    return min(n_image, pivot_image + (pivot_image + pivot_text) * (budget // (pivot_image + pivot_text)))


def dart_keep(keys: torch.Tensor, hidden: torch.Tensor, norm_weight: torch.Tensor, image_start: torch.Tensor,
              n_image: int, budget: int, attention_mask: torch.Tensor | None = None, pivot_image: int = 4,
              pivot_text: int = 4, norm_eps: float = 1e-5) -> torch.Tensor:
    """DART (ZichenWen1/DART @5a19452, ``modeling_llama_self.py``, ``DART.get_retained_image_token``).

    keys: (B, H, L, hd) layer K-1 keys after RoPE (its KV cache); hidden: (B, L, D) output of layer
    K-1 before any norm; norm_weight: (D,) the final norm's weight; budget: the official
    ``max_num_trunction``.

    Per sample, in unpadded positions: ``h = RMSNorm_final(hidden)``; pivots = the ``pivot_image``
    image tokens and the ``pivot_text`` text-after-image tokens with the largest L1 key norm (heads
    concatenated); the pivots are visited in CPython set order (``list(set(image + text))`` of the
    unpadded positions, which is what the official loop does), and each takes the
    ``budget // (pivot_image + pivot_text)`` still-available image tokens of lowest cosine
    similarity to it (image pivots are never available, nothing is taken twice). Keeps the image
    pivots, the picks and every real non-image token: ``dart_count`` image tokens; a count that
    reaches ``n_image`` keeps every image token. Returns the (B, L) keep mask.
    """
    batch, _, length, _ = keys.shape
    device = keys.device
    real = _real(attention_mask, batch, length, device)
    image = _image_index(image_start, n_image)
    if dart_count(n_image, budget, pivot_image, pivot_text) >= n_image:
        return _keep_mask(real, image, torch.ones_like(image, dtype=torch.bool))
    per_pivot = budget // (pivot_image + pivot_text)
    pad = (~real).sum(1)  # (B,) left pads
    text_start = image_start.long() + n_image
    n_text = length - text_start
    if int(n_text.min()) < pivot_text:
        raise ValueError(f"DART needs at least {pivot_text} text tokens after the image, a sample has "
                         f"{int(n_text.min())}")
    norms = keys.float().abs().sum(dim=(1, 3))  # (B, L) L1 norm over heads x head_dim
    image_pivots = image.gather(1, _top(norms.gather(1, image), pivot_image))  # (B, p_i) padded positions
    positions = torch.arange(length, device=device)
    text_scores = norms.masked_fill(positions[None] < text_start[:, None], float("-inf"))
    text_pivots = _top(text_scores, pivot_text)  # (B, p_t) padded positions, top-k order
    h = _rms_norm(hidden, norm_weight, norm_eps)
    kept = torch.zeros(batch, n_image, dtype=torch.bool, device=device)
    kept.scatter_(1, image_pivots - image_start.long()[:, None], True)
    for b in range(batch):
        offset = int(pad[b])
        unpadded = [int(i) - offset for i in image_pivots[b]] + [int(i) - offset for i in text_pivots[b]]
        order = torch.tensor([i + offset for i in list(set(unpadded))], device=device)  # CPython set order
        image_h = h[b, image[b]]  # (n, D)
        cos = F.cosine_similarity(h[b, order][:, None], image_h[None], dim=-1)  # (pivots, n)
        for row in cos:
            available = row.masked_fill(kept[b], float("inf"))
            kept[b, _top(-available, per_pivot)] = True
    return _keep_mask(real, image, kept)


# ------------------------------------------------------------------------------------------ SparseVLM

def sparsevlm_raters(vis_embeds: torch.Tensor, text_embeds: torch.Tensor,
                     text_mask: torch.Tensor | None = None) -> torch.Tensor:
    """SparseVLM's text raters (Gumpest/SparseVLMs v1.5 @734d900, ``modelling_sparse_llama.py``).

    vis_embeds: (B, V, D) layer-0 input at the visual span; text_embeds: (B, T, D) layer-0 input of
    every token after the visual span, right-padded with ``text_mask`` (B, T). ``m`` = softmax over
    the text of ``vis @ textᵀ``, averaged over the visual tokens; a rater is a text token whose ``m``
    exceeds the mean of ``m`` over the sample's real text. Returns (B, T) bool.
    """
    batch, length, _ = text_embeds.shape
    real = _real(text_mask, batch, length, text_embeds.device)
    logits = vis_embeds.float() @ text_embeds.float().transpose(1, 2)  # (B, V, T)
    m = logits.masked_fill(~real[:, None], float("-inf")).softmax(-1).mean(1)  # (B, T)
    mean = (m * real).sum(1, keepdim=True) / real.sum(1, keepdim=True)
    return (m > mean) & real


def sparsevlm_select(attn_text_vis: torch.Tensor, raters: torch.Tensor, retained: int, layer: int,
                     schedule: dict[int, dict[int, int]] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseVLM's selection at pruning layer ``layer`` (v1.5 ``score.attn_postprocess_topk``).

    attn_text_vis: (B, H, T, V) layer ``layer``'s attention probabilities (its own queries and
    keys after RoPE, causal softmax over all keys), rows = the tokens after the visual span,
    columns = the V visual tokens; raters: (B, T) from ``sparsevlm_raters``. relation = mean over
    heads, then over the rater rows; keeps the top ``min(schedule[retained][layer], V - 1)``.
    ``schedule`` defaults to :data:`SPARSEVLM_SCHEDULE`. Returns keep (B, V) bool and relation (B, V).
    """
    schedule = SPARSEVLM_SCHEDULE if schedule is None else schedule
    if retained not in schedule or layer not in schedule[retained]:
        raise ValueError(f"no SparseVLM schedule for retained={retained} at layer {layer}; "
                         f"schedule: {schedule}")
    if not bool(raters.any(1).all()):
        raise ValueError("a sample has no rater token")
    rows = raters.float()[..., None]  # (B, T, 1)
    relation = (attn_text_vis.float().mean(1) * rows).sum(1) / rows.sum(1)  # (B, V)
    count = min(schedule[retained][layer], relation.shape[1] - 1)
    keep = torch.zeros_like(relation, dtype=torch.bool)
    keep.scatter_(1, _top(relation, count), True)
    return keep, relation


def sparsevlm_recycle_counts(n_deleted: int) -> tuple[int, int]:
    """(recycled m, clusters c) for ``n_deleted`` pruned tokens: m = int(0.3 n) + 1, c = int(m / 10) + 1."""
    m = int(n_deleted * 0.3) + 1
    return m, int(m / 10) + 1


def cluster_merge(x: torch.Tensor, clusters: int) -> torch.Tensor:
    """SparseVLM's DPC-kNN ``cluster_and_merge`` of (B, m, D) into (B, clusters, D), without its noise.

    distance/√D; density = exp(-mean of the squared distances to the ``clusters`` nearest, self
    included); parent distance = distance to the nearest denser token (the largest distance of the
    sample when none); centres = top ``clusters`` of distance·density; every token joins its nearest
    centre; merged = Σ x / (count + 1e-6). The official code adds ``rand·1e-6`` to the densities to
    break ties; here a tie in density goes to the token earlier in ``x`` (it counts as denser), and
    ties in score or distance go to the lower index.
    """
    batch, m, dim = x.shape
    xf = x.float()
    dist = torch.cdist(xf, xf, compute_mode="donot_use_mm_for_euclid_dist") / dim**0.5  # (B, m, m)
    nearest = torch.sort(dist, dim=-1).values[..., :clusters]
    density = (-(nearest**2).mean(-1)).exp()  # (B, m)
    index = torch.arange(m, device=x.device)
    denser = (density[:, None, :] > density[:, :, None]) | (
        (density[:, None, :] == density[:, :, None]) & (index[None, None, :] < index[None, :, None]))
    dist_max = dist.flatten(1).max(-1).values[:, None, None]
    parent = torch.where(denser, dist, dist_max).min(-1).values  # (B, m)
    centres = _top(parent * density, clusters)  # (B, c)
    to_centre = dist.gather(1, centres[..., None].expand(-1, -1, m))  # (B, c, m)
    assign = to_centre.argmin(1)  # (B, m)
    assign.scatter_(1, centres, torch.arange(clusters, device=x.device).expand(batch, -1))
    counts = torch.zeros(batch, clusters, device=x.device).scatter_add_(1, assign, torch.ones(batch, m, device=x.device))
    weight = 1.0 / (counts + 1e-6)  # (B, c)
    merged = torch.zeros(batch, clusters, dim, device=x.device)
    merged.scatter_add_(1, assign[..., None].expand(-1, -1, dim), xf * weight.gather(1, assign)[..., None])
    return merged.to(x.dtype)


def sparsevlm_recycle(hidden_vis: torch.Tensor, relation: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """SparseVLM's token recycling (v1.5 ``modelling_sparse_llama.py`` + ``utils.cluster_and_merge``).

    hidden_vis: (B, V, D) the pruning layer's output at the visual span; relation, keep: (B, V) from
    ``sparsevlm_select`` (every sample keeps the same count). The m = int(0.3 · n_deleted) + 1
    deleted tokens of highest relation (in that order) merge into c = int(m / 10) + 1 clusters
    (:func:`cluster_merge`). Returns (B, n_keep + c, D): the kept tokens in ascending order, then
    the merged ones, in ``hidden_vis``'s dtype.
    """
    batch, n, dim = hidden_vis.shape
    n_keep = int(keep[0].sum())
    if not bool((keep.sum(1) == n_keep).all()):
        raise ValueError("every sample of a batch must keep the same number of visual tokens")
    order = torch.arange(n, device=keep.device).expand(batch, -1)
    kept = order[keep].view(batch, n_keep)
    deleted = order[~keep].view(batch, n - n_keep)
    m, c = sparsevlm_recycle_counts(n - n_keep)
    recycled = deleted.gather(1, _top(relation.float().gather(1, deleted), m))  # (B, m), top-k order
    merged = cluster_merge(hidden_vis.gather(1, recycled[..., None].expand(-1, -1, dim)), c)
    return torch.cat([hidden_vis.gather(1, kept[..., None].expand(-1, -1, dim)), merged], dim=1)
