"""Selection registry: exact-budget contract, batch independence, hand-computed cases per method."""
from __future__ import annotations

import pytest
import torch

from icctp.baselines import METHODS, Selection, select
from icctp.select import icctp_select

PRUNING = [m for m in METHODS if m != "full"]


def batch(B=4, n=40, d=8, K=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(B, n, d, generator=g).to(dtype)
    cls_attn = torch.rand(B, n, generator=g).to(dtype)
    centers = torch.randn(B, K, d, generator=g).to(dtype)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[0, 1:] = False
    return tokens, cls_attn, dict(centers=centers, center_mask=mask)


def test_methods_registry():
    assert METHODS == ("full", "random", "cls", "visionzip", "dart_pre", "icctp")
    tokens, cls_attn, extra = batch()
    with pytest.raises(ValueError, match=r"unknown method 'fastv'.*'full', 'random', 'cls', 'visionzip', 'dart_pre', 'icctp'"):
        select("fastv", tokens, cls_attn, 8)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("budget", [1, 2, 7, 16, 39, 40, 100])
def test_exact_budget_contract(method, budget):
    tokens, cls_attn, extra = batch()
    n, d = tokens.shape[1:]
    sel = select(method, tokens, cls_attn, budget, **extra)
    assert isinstance(sel, Selection) and len(sel) == 4
    expected = n if method == "full" else min(budget, n)
    for b, kept in enumerate(sel):
        assert kept.dtype == torch.int64
        assert torch.equal(kept, torch.unique(kept)) and (kept >= 0).all() and (kept < n).all()
        m = 0
        if sel.merged is not None:
            assert sel.merged[b].shape[1] == d and sel.merged[b].dtype == tokens.dtype
            m = sel.merged[b].shape[0]
        assert len(kept) + m == expected
        if budget >= n:
            assert torch.equal(kept, torch.arange(n)) and m == 0
    assert (sel.merged is not None) == (method == "visionzip")
    assert (sel.clusters is not None) == (method == "icctp")


@pytest.mark.parametrize("method", METHODS)
def test_batched_equals_per_sample(method):
    tokens, cls_attn, extra = batch(B=5, n=60, seed=1)
    seeds = [3, 1, 4, 1, 5]
    sel = select(method, tokens, cls_attn, 13, seeds=seeds, **extra)
    for b in range(5):
        alone_extra = {k: v[b : b + 1] for k, v in extra.items()}
        alone = select(method, tokens[b : b + 1], cls_attn[b : b + 1], 13, seeds=seeds[b : b + 1], **alone_extra)
        assert torch.equal(sel[b], alone[0])
        if sel.merged is not None:
            assert torch.equal(sel.merged[b], alone.merged[0])
        if sel.clusters is not None:
            assert torch.equal(sel.clusters[b], alone.clusters[0])


def test_random_is_seeded_per_sample():
    tokens, cls_attn, _ = batch(B=3, n=50)
    default = select("random", tokens, cls_attn, 10)
    expected = torch.sort(torch.randperm(50, generator=torch.Generator().manual_seed(0))[:10]).values
    assert all(torch.equal(k, expected) for k in default)
    seeded = select("random", tokens, cls_attn, 10, seeds=[0, 1, 2])
    assert torch.equal(seeded[0], expected) and not torch.equal(seeded[1], seeded[2])
    assert all(torch.equal(x, y) for x, y in zip(seeded, select("random", tokens, cls_attn, 10, seeds=[0, 1, 2])))
    with pytest.raises(ValueError, match="seeds"):
        select("random", tokens, cls_attn, 10, seeds=[0, 1])


def test_cls_keeps_top_attention_ties_to_lower_index():
    tokens = torch.zeros(1, 6, 2)
    cls_attn = torch.tensor([[0.1, 0.5, 0.2, 0.5, 0.0, 0.2]])
    assert select("cls", tokens, cls_attn, 3)[0].tolist() == [1, 2, 3]
    assert select("cls", tokens, cls_attn, 4)[0].tolist() == [1, 2, 3, 5]


def test_visionzip_hand_computed():
    tokens = torch.tensor([[[5.0, 5.0], [1.0, 0.0], [7.0, 7.0], [0.9, 0.1], [0.0, 1.0], [0.1, 1.0]]])
    cls_attn = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.3, 0.4]])
    # dominant 0, 2; rest 1, 3, 4, 5 -> targets 1, 4 (every 2nd); 3 joins 1, 5 joins 4
    sel = select("visionzip", tokens, cls_attn, 4, dominant_ratio=0.5)
    assert sel[0].tolist() == [0, 2]
    torch.testing.assert_close(sel.merged[0], torch.tensor([[0.95, 0.05], [0.05, 1.0]]))
    # default ratio 54/64 at budget 64: 54 dominant + 10 merged
    tokens, cls_attn, _ = batch(B=2, n=576, d=16)
    sel = select("visionzip", tokens, cls_attn, 64)
    assert [len(k) for k in sel] == [54, 54] and [m.shape[0] for m in sel.merged] == [10, 10]
    assert torch.equal(sel[0], torch.sort(torch.topk(cls_attn[0], 54).indices).values)


def test_dart_hand_computed():
    tokens = torch.tensor([[[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [-1.0, 0.0], [0.5, 0.5]]])
    cls_attn = torch.tensor([[0.9, 0.1, 0.1, 0.1, 0.1, 0.8]])
    # pivots 0 then 5; pivot 0 adds 3 (cos -1, ties with 4 -> lower index); pivot 5 adds 4 (cos -0.71)
    assert select("dart_pre", tokens, cls_attn, 4, n_pivots=2)[0].tolist() == [0, 3, 4, 5]
    # one pivot, two slots: the two tokens opposite to it
    assert select("dart_pre", tokens, cls_attn, 3, n_pivots=1)[0].tolist() == [0, 3, 4]
    with pytest.raises(ValueError, match="n_pivots"):
        select("dart_pre", tokens, cls_attn, 3, n_pivots=4)


def test_icctp_passes_options_through():
    tokens, cls_attn, extra = batch(seed=2)
    for options in (dict(), dict(rho_g=0.4, alpha=0.7), dict(allocation="paper", rho_c=0.2)):
        sel = select("icctp", tokens, cls_attn, 12, **extra, **options)
        kept, clusters = icctp_select(tokens, cls_attn, extra["centers"], extra["center_mask"], 12, return_clusters=True, **options)
        assert all(torch.equal(x, y) for x, y in zip(sel, kept))
        assert all(torch.equal(x, y) for x, y in zip(sel.clusters, clusters))
    with pytest.raises(ValueError, match="centers"):
        select("icctp", tokens, cls_attn, 12)


def test_bad_inputs_raise():
    tokens, cls_attn, extra = batch()
    with pytest.raises(ValueError, match="budget"):
        select("cls", tokens, cls_attn, 0)
    with pytest.raises(ValueError, match="cls_attn"):
        select("dart_pre", tokens, cls_attn[:, :5], 4)
    nan_tokens = tokens.clone()
    nan_tokens[1, 3, 0] = float("nan")
    with pytest.raises(ValueError, match="tokens contains NaN"):
        select("visionzip", nan_tokens, cls_attn, 4)
    with pytest.raises(TypeError, match="n_pivots|unexpected keyword"):
        select("cls", tokens, cls_attn, 4, n_pivots=2)


@pytest.mark.parametrize("method", PRUNING)
def test_low_precision_inputs(method):
    tokens, cls_attn, extra = batch(dtype=torch.bfloat16)
    sel = select(method, tokens, cls_attn, 10, **extra)
    assert all(len(k) + (0 if sel.merged is None else sel.merged[b].shape[0]) == 10 for b, k in enumerate(sel))
