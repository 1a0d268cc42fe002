"""icctp_select: equal to the loop reference of Algorithm 1, exact-budget contract, batching, validation."""
from __future__ import annotations

import math
import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_algorithm import reference_icctp
from torch.profiler import ProfilerActivity, profile

from icctp.select import icctp_select


def make_case(rng: random.Random, batch: int | None = None):
    """Random batch with deliberate ties (duplicated tokens, discrete or constant attention)."""
    B = batch or rng.randint(1, 4)
    n = rng.randint(1, 60)
    d = rng.randint(1, 12)
    K = rng.randint(1, 5)
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    tokens = torch.randn(B, n, d, generator=g)
    if rng.random() < 0.3 and n > 2:
        src = torch.randint(0, n, (n // 3,), generator=g)
        dst = torch.randint(0, n, (n // 3,), generator=g)
        tokens[:, dst] = tokens[:, src]
    attn_kind = rng.choice(["continuous", "discrete", "constant"])
    if attn_kind == "continuous":
        cls_attn = torch.rand(B, n, generator=g)
    elif attn_kind == "discrete":
        cls_attn = torch.randint(0, 4, (B, n), generator=g).float() / 7
    else:
        cls_attn = torch.full((B, n), 1.0 / n)
    centers = torch.randn(B, K, d, generator=g)
    center_mask = torch.rand(B, K, generator=g) < 0.7
    center_mask[torch.arange(B), torch.randint(0, K, (B,), generator=g)] = True
    centers[~center_mask] = 0.0
    budget = rng.randint(1, n + 3)
    rho_g = rng.choice([0.6, 0.5, 0.25, rng.uniform(0.01, 0.99)])
    alpha = rng.choice([0.3, 0.0, 1.0, rng.uniform(0.0, 1.0)])
    rho_c = rng.choice([None, None, rng.uniform(0.01, 1.0)])
    return tokens, cls_attn, centers, center_mask, budget, rho_g, alpha, rho_c


def reference_batch(tokens, cls_attn, centers, center_mask, budget, **kw):
    kept, clusters = [], []
    for b in range(tokens.shape[0]):
        valid = center_mask[b].nonzero()[:, 0]
        k, c = reference_icctp(tokens[b], cls_attn[b], list(centers[b, valid]), budget, **kw)
        kept.append(k)
        clusters.append([-1 if j < 0 else int(valid[j]) for j in c])
    return kept, clusters


@pytest.mark.parametrize("allocation", ["paper", "exact"])
def test_vectorized_equals_reference_loop(allocation):
    rng = random.Random(1234 if allocation == "paper" else 4321)
    for _ in range(220):
        tokens, cls_attn, centers, mask, budget, rho_g, alpha, rho_c = make_case(rng)
        kept, clusters = icctp_select(
            tokens, cls_attn, centers, mask, budget, rho_g=rho_g, alpha=alpha, allocation=allocation, rho_c=rho_c,
            return_clusters=True,
        )
        ref_kept, ref_clusters = reference_batch(
            tokens, cls_attn, centers, mask, budget, rho_g=rho_g, alpha=alpha, allocation=allocation, rho_c=rho_c
        )
        assert [k.tolist() for k in kept] == ref_kept
        assert [c.tolist() for c in clusters] == ref_clusters
        assert all(k.dtype == torch.int64 and c.dtype == torch.int64 for k, c in zip(kept, clusters))


def check_exact_contract(tokens, cls_attn, centers, mask, budget, rho_g, alpha):
    """The exact-mode guarantees, checked from first principles (float64 scores, tolerance 1e-5)."""
    kept, clusters = icctp_select(tokens, cls_attn, centers, mask, budget, rho_g=rho_g, alpha=alpha, return_clusters=True)
    n = tokens.shape[1]
    n_a = min(budget, n)
    k_g = math.floor(rho_g * n_a)
    for b, (k, c) in enumerate(zip(kept, clusters)):
        assert len(k) == n_a and len(c) == n_a
        assert torch.equal(k, torch.unique(k))  # sorted and unique
        top_cls = torch.sort(cls_attn[b], descending=True, stable=True).indices[:k_g]
        assert set(top_cls.tolist()) <= set(k.tolist())
        if budget >= n:
            assert torch.equal(k, torch.arange(n))
            continue
        assert int((c == -1).sum()) == k_g
        # recompute clusters and scores of all residual tokens
        v = tokens[b].double()
        cen = centers[b].double()
        cos = torch.nn.functional.normalize(v, dim=-1) @ torch.nn.functional.normalize(cen, dim=-1).T
        cos[:, ~mask[b]] = -math.inf
        assign = cos.argmax(1)
        a = cls_attn[b].double()
        span = a.max() - a.min()
        a_t = (a - a.min()) / span if span > 0 else torch.zeros_like(a)
        score = alpha * cos.max(1).values + (1 - alpha) * a_t
        residual = torch.ones(n, dtype=torch.bool)
        residual[top_cls] = False
        kept_set = set(k.tolist())
        nonempty = {int(j) for j in assign[residual].unique()}
        kept_clusters = {int(j) for j in c if j >= 0}
        r = n_a - k_g
        if r >= len(nonempty):
            assert kept_clusters == nonempty  # every non-empty cluster keeps >= 1
        else:
            assert len(kept_clusters) == r
        assert kept_clusters <= nonempty
        for j in nonempty:
            members = [i for i in residual.nonzero()[:, 0].tolist() if assign[i] == j]
            kept_m = [i for i in members if i in kept_set]
            dropped_m = [i for i in members if i not in kept_set]
            if kept_m and dropped_m:
                assert max(score[dropped_m]) <= min(score[kept_m]) + 1e-5


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 80),
    K=st.integers(1, 8),
    budget=st.integers(1, 90),
    rho_g=st.floats(0.01, 0.99),
    alpha=st.floats(0.0, 1.0),
)
def test_exact_mode_contract(seed, n, K, budget, rho_g, alpha):
    g = torch.Generator().manual_seed(seed)
    B, d = 3, 8
    tokens = torch.randn(B, n, d, generator=g)
    cls_attn = torch.rand(B, n, generator=g)
    centers = torch.randn(B, K, d, generator=g)
    mask = torch.rand(B, K, generator=g) < 0.6
    mask[:, 0] = True
    check_exact_contract(tokens, cls_attn, centers, mask, budget, rho_g, alpha)


def test_batched_equals_per_sample_and_padding_is_inert():
    rng = random.Random(7)
    for _ in range(40):
        tokens, cls_attn, centers, mask, budget, rho_g, alpha, rho_c = make_case(rng, batch=4)
        for allocation in ("exact", "paper"):
            kw = dict(rho_g=rho_g, alpha=alpha, allocation=allocation, rho_c=rho_c, return_clusters=True)
            kept, clusters = icctp_select(tokens, cls_attn, centers, mask, budget, **kw)
            for b in range(4):
                valid = mask[b].nonzero()[:, 0]
                # alone, with only its valid centers, and with extra garbage padded centers
                alone_k, alone_c = icctp_select(tokens[b : b + 1], cls_attn[b : b + 1], centers[b : b + 1, valid],
                                                mask[b : b + 1, valid], budget, **kw)
                assert torch.equal(kept[b], alone_k[0])
                assert torch.equal(clusters[b], torch.where(alone_c[0] >= 0, valid[alone_c[0].clamp(min=0)], -1))
                junk = torch.full((1, 3, tokens.shape[2]), float("nan"))
                padded_c = torch.cat([centers[b : b + 1], junk], dim=1)
                padded_m = torch.cat([mask[b : b + 1], torch.zeros(1, 3, dtype=torch.bool)], dim=1)
                pad_k, pad_c = icctp_select(tokens[b : b + 1], cls_attn[b : b + 1], padded_c, padded_m, budget, **kw)
                assert torch.equal(kept[b], pad_k[0]) and torch.equal(clusters[b], pad_c[0])


def top_level_ops(fn) -> list[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sorted(e.name for e in prof.events() if e.cpu_parent is None)


@pytest.mark.parametrize("allocation", ["exact", "paper"])
def test_op_count_does_not_depend_on_batch_or_clusters(allocation):
    def run(B, K):
        g = torch.Generator().manual_seed(B * 100 + K)
        args = (torch.randn(B, 64, 16, generator=g), torch.rand(B, 64, generator=g),
                torch.randn(B, K, 16, generator=g), torch.ones(B, K, dtype=torch.bool))
        return top_level_ops(lambda: icctp_select(*args, 16, allocation=allocation, return_clusters=True))

    ops = {(B, K): run(B, K) for B in (1, 32) for K in (1, 8)}
    reference = ops[(1, 1)]
    assert len(reference) > 20
    for key, names in ops.items():
        assert names == reference, key


def test_hand_computed_example():
    # 6 tokens in 2D, two centers along x and y; budget 4, rho_g 0.5 -> k_g = 2, r = 2.
    tokens = torch.tensor([[1.0, 0.1], [0.1, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.3], [0.2, 1.0]])[None]
    cls_attn = torch.tensor([[0.9, 0.8, 0.1, 0.2, 0.3, 0.0]])
    centers = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    mask = torch.ones(1, 2, dtype=torch.bool)
    # G = {0, 1}; residual 2, 4 -> center 0; 3, 5 -> center 1. One each (sizes 2, 2, r = 2).
    # alpha=0: scores = min-max attention -> cluster 0 keeps 4 (0.3), cluster 1 keeps 3 (0.2).
    kept, clusters = icctp_select(tokens, cls_attn, centers, mask, 4, rho_g=0.5, alpha=0.0, return_clusters=True)
    assert kept[0].tolist() == [0, 1, 3, 4] and clusters[0].tolist() == [-1, -1, 1, 0]
    # alpha=1: scores = cosine -> cluster 0 keeps 2 (cos 1), cluster 1 keeps 3 (cos 1).
    kept = icctp_select(tokens, cls_attn, centers, mask, 4, rho_g=0.5, alpha=1.0)
    assert kept[0].tolist() == [0, 1, 2, 3]
    # budget 3, rho_g 0.7: k_g = 2, r = 1 < 2 clusters -> only the cluster whose best token scores
    # highest keeps one (alpha=0: token 4, 0.3 > token 3, 0.2).
    kept = icctp_select(tokens, cls_attn, centers, mask, 3, rho_g=0.7, alpha=0.0)
    assert kept[0].tolist() == [0, 1, 4]
    # paper mode, rho_c 0.5: k_j = max(1, floor(0.5 * 2)) = 1 per cluster -> same as exact here;
    # rho_c 1.0 keeps every residual token.
    assert icctp_select(tokens, cls_attn, centers, mask, 4, rho_g=0.5, alpha=0.0, allocation="paper", rho_c=0.5)[0].tolist() == [0, 1, 3, 4]
    assert icctp_select(tokens, cls_attn, centers, mask, 4, rho_g=0.5, allocation="paper", rho_c=1.0)[0].tolist() == list(range(6))


def test_ties_go_to_lower_index():
    tokens = torch.ones(2, 10, 4)
    cls_attn = torch.full((2, 10), 0.1)
    centers = torch.ones(2, 3, 4)  # three identical centers: all tokens go to center 0
    mask = torch.ones(2, 3, dtype=torch.bool)
    kept, clusters = icctp_select(tokens, cls_attn, centers, mask, 5, return_clusters=True)
    for k, c in zip(kept, clusters):
        assert k.tolist() == [0, 1, 2, 3, 4]
        assert c.tolist() == [-1, -1, -1, 0, 0]


@pytest.mark.parametrize("allocation", ["exact", "paper"])
def test_budget_at_least_n_keeps_all(allocation):
    g = torch.Generator().manual_seed(0)
    tokens, cls_attn = torch.randn(3, 20, 8, generator=g), torch.rand(3, 20, generator=g)
    centers, mask = torch.randn(3, 2, 8, generator=g), torch.ones(3, 2, dtype=torch.bool)
    for budget in (20, 21, 1000):
        kept = icctp_select(tokens, cls_attn, centers, mask, budget, allocation=allocation, rho_c=0.1)
        assert all(torch.equal(k, torch.arange(20)) for k in kept)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs_score_in_float32(dtype):
    g = torch.Generator().manual_seed(3)
    tokens = torch.randn(4, 100, 32, generator=g).to(dtype)
    cls_attn = torch.rand(4, 100, generator=g).to(dtype)
    centers = torch.randn(4, 3, 32, generator=g).to(dtype)
    mask = torch.ones(4, 3, dtype=torch.bool)
    for allocation in ("exact", "paper"):
        low = icctp_select(tokens, cls_attn, centers, mask, 17, allocation=allocation, return_clusters=True)
        high = icctp_select(tokens.float(), cls_attn.float(), centers.float(), mask, 17, allocation=allocation, return_clusters=True)
        for part_low, part_high in zip(low, high):
            assert all(torch.equal(x, y) for x, y in zip(part_low, part_high))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu():
    rng = random.Random(11)
    for _ in range(20):
        tokens, cls_attn, centers, mask, budget, rho_g, alpha, rho_c = make_case(rng)
        for allocation in ("exact", "paper"):
            kw = dict(rho_g=rho_g, alpha=alpha, allocation=allocation, rho_c=rho_c)
            cpu = icctp_select(tokens, cls_attn, centers, mask, budget, **kw)
            gpu = icctp_select(tokens.cuda(), cls_attn.cuda(), centers.cuda(), mask.cuda(), budget, **kw)
            assert all(g.is_cuda and torch.equal(c, g.cpu()) for c, g in zip(cpu, gpu))


def valid_args():
    return dict(
        tokens=torch.randn(2, 10, 4), cls_attn=torch.rand(2, 10), centers=torch.randn(2, 3, 4),
        center_mask=torch.ones(2, 3, dtype=torch.bool), budget=4,
    )


def with_nan(x):
    x = x.clone()
    x.view(-1)[0] = float("nan")
    return x


@pytest.mark.parametrize(
    "change, error, match",
    [
        (dict(budget=0), ValueError, "budget"),
        (dict(budget=-3), ValueError, "budget"),
        (dict(budget=2.0), TypeError, "budget"),
        (dict(rho_g=0.0), ValueError, "rho_g"),
        (dict(rho_g=1.0), ValueError, "rho_g"),
        (dict(alpha=-0.1), ValueError, "alpha"),
        (dict(alpha=1.5), ValueError, "alpha"),
        (dict(rho_c=0.0), ValueError, "rho_c"),
        (dict(allocation="greedy"), ValueError, "allocation"),
        (dict(tokens=torch.randn(10, 4)), ValueError, "tokens"),
        (dict(cls_attn=torch.rand(2, 9)), ValueError, "cls_attn"),
        (dict(centers=torch.randn(2, 3, 5)), ValueError, "centers"),
        (dict(centers=torch.randn(1, 3, 4)), ValueError, "centers"),
        (dict(center_mask=torch.ones(2, 2, dtype=torch.bool)), ValueError, "center_mask"),
        (dict(center_mask=torch.ones(2, 3)), TypeError, "center_mask"),
        (dict(center_mask=torch.tensor([[True, False, False], [False, False, False]])), ValueError, r"no valid center .* \[1\]"),
        ("tokens", ValueError, "tokens contains NaN"),
        ("cls_attn", ValueError, "cls_attn contains NaN"),
        ("centers", ValueError, "centers contains NaN"),
    ],
)
def test_invalid_inputs_raise_clear_errors(change, error, match):
    args = valid_args()
    if isinstance(change, str):
        args[change] = with_nan(args[change])
    else:
        args.update(change)
    with pytest.raises(error, match=match):
        icctp_select(**args)


def test_nan_in_padded_center_is_allowed():
    args = valid_args()
    args["centers"][:, 2] = float("nan")
    args["center_mask"][:, 2] = False
    kept, clusters = icctp_select(**args, return_clusters=True)
    assert all(len(k) == 4 and not (c == 2).any() for k, c in zip(kept, clusters))
