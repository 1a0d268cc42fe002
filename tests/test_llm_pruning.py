"""FastV, DART and SparseVLM keep functions: hand-computed quirks, equal to per-sample reference
loops shaped like the official code, left-padded batches equal to per-sample calls."""
from __future__ import annotations

import pytest
import reference_llm_pruning as ref
import torch

from icctp import (
    SPARSEVLM_SCHEDULE,
    dart_keep,
    fastv_equivalent_R,
    fastv_keep,
    sparsevlm_raters,
    sparsevlm_recycle,
    sparsevlm_select,
)
from icctp.llm_pruning import cluster_merge, dart_count, sparsevlm_recycle_counts


def _left_pad(rows: list[torch.Tensor], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad tensors along ``dim`` (the sequence axis) to one batch; returns (batch, mask)."""
    length = max(r.shape[dim] for r in rows)
    out, mask = [], torch.zeros(len(rows), length, dtype=torch.long)
    for b, r in enumerate(rows):
        pad = length - r.shape[dim]
        shape = list(r.shape)
        shape[dim] = pad
        out.append(torch.cat([torch.zeros(shape), r], dim=dim))
        mask[b, pad:] = 1
    return torch.stack(out), mask


# ---------------------------------------------------------------------------------------------- FastV

@pytest.mark.parametrize("avg,layers,R", [(64, 32, 30), (128, 32, 98), (192, 32, 166),
                                          (64, 40, 37), (128, 40, 104), (192, 40, 172), (36, 32, 0)])
def test_fastv_equivalent_R_table(avg, layers, R):
    assert fastv_equivalent_R(avg, layers, 2, 576) == R


def test_fastv_equivalent_R_unreachable():
    with pytest.raises(ValueError, match="smallest reachable average is 36"):
        fastv_equivalent_R(29, 32, 2, 576)
    with pytest.raises(ValueError, match="K=2"):
        fastv_equivalent_R(64, 2, 2, 576)


def test_fastv_head_mean_of_the_last_real_query():
    # image at 1..3; head 0 favours position 1, head 1 favours 3 strongly: the mean picks 3 then 1.
    attn = torch.tensor([[[0.1, 0.5, 0.1, 0.2, 0.1], [0.1, 0.2, 0.1, 0.5, 0.1]]])
    attn[0, 1, 3] = 0.6
    keep = fastv_keep(attn, torch.tensor([1]), 3, 2)
    assert keep.tolist() == [[True, True, False, True, True]]
    # ties go to the lower index
    flat = torch.full((1, 2, 5), 0.2)
    assert fastv_keep(flat, torch.tensor([1]), 3, 1).tolist() == [[True, True, False, False, True]]
    assert fastv_keep(flat, torch.tensor([1]), 3, 9).all()


def test_fastv_batched_left_padded_equals_reference():
    g = torch.Generator().manual_seed(0)
    lengths, n_image, R = (12, 9, 15), 5, 3
    starts = [2, 1, 4]
    rows = [torch.rand(3, L, generator=g).softmax(-1) for L in lengths]
    attn, mask = _left_pad(rows, dim=1)
    pad = mask.shape[1] - mask.sum(1)
    keep = fastv_keep(attn, pad + torch.tensor(starts), n_image, R, mask)
    for b, (row, start) in enumerate(zip(rows, starts)):
        got = (keep[b].nonzero().flatten() - pad[b]).tolist()
        assert got == ref.fastv(row, start, n_image, R)
        assert fastv_keep(row[None], torch.tensor([start]), n_image, R)[0].nonzero().flatten().tolist() == got


# ----------------------------------------------------------------------------------------------- DART

@pytest.mark.parametrize("budget,count", [(64, 68), (128, 132), (192, 196), (29, 28), (58, 60), (144, 148)])
def test_dart_count(budget, count):
    assert dart_count(576, budget) == count
    keys, hidden, weight = _dart_inputs(torch.Generator().manual_seed(budget), 640)
    keep = dart_keep(keys[None], hidden[None], weight, torch.tensor([35]), 576, budget)
    assert int(keep[0, 35:611].sum()) == count and bool(keep[0, :35].all() and keep[0, 611:].all())


def _dart_inputs(g, length, heads=2, hd=4, dim=8):
    return (torch.randn(heads, length, hd, generator=g), torch.randn(length, dim, generator=g),
            torch.rand(dim, generator=g) + 0.5)


def test_dart_equals_the_official_loop_and_its_set_order_matters():
    differs = 0
    for seed in range(6):
        g = torch.Generator().manual_seed(seed)
        keys, hidden, weight = _dart_inputs(g, 60)
        want = ref.dart(keys, hidden, weight, 3, 48, 16, pivot_image=2, pivot_text=2)
        got = dart_keep(keys[None], hidden[None], weight, torch.tensor([3]), 48, 16, pivot_image=2, pivot_text=2)
        assert got[0].nonzero().flatten().tolist() == want
        differs += want != ref.dart(keys, hidden, weight, 3, 48, 16, pivot_image=2, pivot_text=2, visit=sorted)
    assert differs > 0  # visiting the pivots in sorted order would change the kept tokens


def test_dart_visits_pivots_in_cpython_set_order_of_unpadded_positions():
    # image 1..6, text 7..8; pivots: image 4 and text 8 (largest key norms). list({4, 8}) == [8, 4]
    # (8-slot table: 8 % 8 = 0 first), so the text pivot picks first. Both find token 1 least similar;
    # the text pivot takes it, and the image pivot then takes 2 (sorted order would give 1 and 3).
    assert list({4, 8}) == [8, 4]
    hidden = torch.tensor([[1.0, 1.0], [-1.0, -1.0], [-0.6, 1.0], [1.0, -0.6], [1.0, 0.0], [1.0, 1.0], [1.0, 1.0],
                           [1.0, 1.0], [0.0, 1.0]])
    keys = torch.ones(1, 9, 1)
    keys[0, 4], keys[0, 8] = 5.0, 5.0
    weight = torch.ones(2)
    keep = dart_keep(keys[None], hidden[None], weight, torch.tensor([1]), 6, 2, pivot_image=1, pivot_text=1)
    assert keep[0].nonzero().flatten().tolist() == [0, 1, 2, 4, 7, 8]
    # four left pads: padded pivots {8, 12} would visit the image pivot first; the unpadded order is kept
    pad = torch.zeros(1, 13, 1)
    pad[0, 4:] = keys[0]
    hidden_pad = torch.cat([torch.zeros(4, 2), hidden])
    mask = torch.tensor([[0] * 4 + [1] * 9])
    keep = dart_keep(pad[None], hidden_pad[None], weight, torch.tensor([5]), 6, 2, mask, pivot_image=1, pivot_text=1)
    assert (keep[0].nonzero().flatten() - 4).tolist() == [0, 1, 2, 4, 7, 8]


def test_dart_batched_left_padded_equals_per_sample():
    g = torch.Generator().manual_seed(7)
    lengths, starts, n_image, budget = (70, 62, 75), (5, 3, 9), 50, 24
    inputs = [_dart_inputs(g, L) for L in lengths]
    weight = inputs[0][2]
    keys, mask = _left_pad([k for k, _, _ in inputs], dim=1)
    hidden, _ = _left_pad([h for _, h, _ in inputs], dim=0)
    pad = mask.shape[1] - mask.sum(1)
    keep = dart_keep(keys, hidden, weight, pad + torch.tensor(starts), n_image, budget, mask)
    for b, ((k, h, _), start) in enumerate(zip(inputs, starts)):
        alone = dart_keep(k[None], h[None], weight, torch.tensor([start]), n_image, budget)[0]
        assert (keep[b].nonzero().flatten() - pad[b]).tolist() == alone.nonzero().flatten().tolist()
        assert alone.nonzero().flatten().tolist() == ref.dart(k, h, weight, start, n_image, budget)
    assert not keep[~mask.bool()].any()


def test_dart_budget_covering_every_image_token_keeps_all():
    keys, hidden, weight = _dart_inputs(torch.Generator().manual_seed(1), 30)
    assert dart_keep(keys[None], hidden[None], weight, torch.tensor([2]), 20, 16).all()  # 4 + 8*2 = 20


# ------------------------------------------------------------------------------------------ SparseVLM

def test_sparsevlm_schedule_is_the_official_table():
    assert SPARSEVLM_SCHEDULE == {64: {2: 66, 6: 30, 15: 17}, 128: {2: 303, 6: 110, 15: 36},
                                  192: {2: 300, 6: 200, 15: 110}}


def test_sparsevlm_raters_hand_computed():
    vis = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    text = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    # softmax over text of [2, 0, 0] per visual row: m = e^2/(e^2+2), 1/(e^2+2), 1/(e^2+2); mean = 1/3.
    assert sparsevlm_raters(vis[None], text[None]).tolist() == [[True, False, False]]
    padded = torch.cat([text, torch.full((2, 2), 9.0)])[None]
    assert sparsevlm_raters(vis[None], padded, torch.tensor([[1, 1, 1, 0, 0]])).tolist() == \
        [[True, False, False, False, False]]


def test_sparsevlm_select_equals_reference_and_caps_at_V_minus_1():
    g = torch.Generator().manual_seed(3)
    attn = torch.rand(2, 4, 6, 80, generator=g)
    raters = torch.rand(2, 6, generator=g) > 0.5
    raters[:, 0] = True
    keep, relation = sparsevlm_select(attn, raters, 64, 2)
    for b in range(2):
        want_keep, want_rel = ref.sparsevlm_select(attn[b], raters[b], 66)
        assert keep[b].tolist() == want_keep.tolist()
        assert torch.allclose(relation[b], want_rel, atol=1e-6)
    assert keep.sum(1).tolist() == [66, 66]
    assert sparsevlm_select(attn[:, :, :, :20], raters, 64, 2)[0].sum(1).tolist() == [19, 19]
    with pytest.raises(ValueError, match="no SparseVLM schedule"):
        sparsevlm_select(attn, raters, 32, 2)


@pytest.mark.parametrize("deleted,m,c", [(510, 154, 16), (273, 82, 9), (3, 1, 1), (33, 10, 2)])
def test_sparsevlm_recycle_counts(deleted, m, c):
    assert sparsevlm_recycle_counts(deleted) == (m, c)


def test_cluster_merge_density_tie_goes_to_the_earlier_token():
    # four points on a line, all with the same kNN density: 0 is the densest (earliest); the centres
    # are 0 (no denser token: largest distance) and 2 (distance 9 to its nearest denser token, 1).
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])[None]
    merged = cluster_merge(x, 2)
    assert torch.allclose(merged[0, :, 0], torch.tensor([1.0, 21.0]) / (2 + 1e-6))


def test_sparsevlm_recycle_hand_computed_and_equals_reference():
    hidden = torch.arange(10.0).view(5, 2)[None]
    relation = torch.tensor([[0.1, 0.9, 0.3, 0.8, 0.2]])
    keep = torch.tensor([[False, True, False, True, False]])
    # 3 deleted -> m = 1 (the deleted token of highest relation: 2), c = 1.
    out = sparsevlm_recycle(hidden, relation, keep)
    assert torch.allclose(out[0], torch.tensor([[2.0, 3.0], [6.0, 7.0], [4.0 / (1 + 1e-6), 5.0 / (1 + 1e-6)]]))
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(3, 120, 16, generator=g)
    relation = torch.rand(3, 120, generator=g)
    keep = torch.zeros(3, 120, dtype=torch.bool)
    keep.scatter_(1, relation.topk(30).indices, True)
    out = sparsevlm_recycle(hidden, relation, keep)
    m, c = sparsevlm_recycle_counts(90)
    assert out.shape == (3, 30 + c, 16) and (m, c) == (28, 3)
    for b in range(3):
        assert torch.allclose(out[b], ref.sparsevlm_recycle(hidden[b], relation[b], keep[b]), atol=1e-5)
        assert torch.allclose(sparsevlm_recycle(hidden[b:b + 1], relation[b:b + 1], keep[b:b + 1])[0], out[b])


def test_sparsevlm_raters_batched_equals_per_sample():
    g = torch.Generator().manual_seed(11)
    vis = torch.randn(2, 30, 8, generator=g)
    texts = [torch.randn(7, 8, generator=g), torch.randn(4, 8, generator=g)]
    padded = torch.zeros(2, 7, 8)
    mask = torch.zeros(2, 7, dtype=torch.long)
    for b, t in enumerate(texts):
        padded[b, : len(t)], mask[b, : len(t)] = t, 1
    got = sparsevlm_raters(vis, padded, mask)
    for b, t in enumerate(texts):
        assert got[b, : len(t)].tolist() == ref.sparsevlm_raters(vis[b], t).tolist()
        assert not got[b, len(t):].any()
