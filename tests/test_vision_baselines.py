"""VisionZip, ToMe and PruMerge(+) in their official semantics: equal to per-sample references that walk
the official code, hand-computed cases for each official quirk, batched == per-sample."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import icctp
from icctp.prumerge import outlier_ratio
from icctp.visionzip import visionzip_split
from tests.official_reference import outlier_ratio_numpy, prumerge_one, tome_one, visionzip_one

ATOL = 1e-5


def test_exported_names():
    for name in ("visionzip_compress", "tome_merge", "tome_attention", "tome_parse_r", "prumerge_plus", "prumerge"):
        assert callable(getattr(icctp, name))


# ---------------------------------------------------------------- VisionZip


def vz_inputs(B=3, N=48, D=12, H=3, hd=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, N + 1, D, generator=g)
    cls_attn = torch.rand(B, H, N + 1, generator=g).softmax(-1)
    keys = torch.randn(B, H, N + 1, hd, generator=g)
    return hidden, cls_attn, keys


@pytest.mark.parametrize("dominant,contextual", [(54, 10), (27, 5), (1, 7), (9, 0), (40, 9)])
def test_visionzip_equals_official_per_sample(dominant, contextual):
    hidden, cls_attn, keys = vz_inputs(N=63 if dominant < 54 else 576)
    tokens, kept = icctp.visionzip_compress(hidden, cls_attn, keys, dominant, contextual)
    assert tokens.shape == (3, dominant + contextual, hidden.shape[2]) and kept.dtype == torch.int64
    for b in range(3):
        if contextual == 0:
            expect_idx = torch.cat([torch.zeros(1, dtype=torch.long), cls_attn[b, :, 1:].sum(0).topk(dominant - 1)[1] + 1])
            assert torch.equal(kept[b], expect_idx.sort().values)
            assert torch.equal(tokens[b], hidden[b, kept[b]])
            continue
        ref_tokens, ref_indices = visionzip_one(hidden[b], cls_attn[b], keys[b], dominant, contextual)
        assert torch.equal(kept[b], ref_indices.sort().values) and kept[b, 0] == 0
        torch.testing.assert_close(tokens[b], ref_tokens, atol=ATOL, rtol=0)
        alone = icctp.visionzip_compress(hidden[b : b + 1], cls_attn[b : b + 1], keys[b : b + 1], dominant, contextual)
        assert torch.equal(alone[0][0], tokens[b]) and torch.equal(alone[1][0], kept[b])


def _vz_hand():
    hidden = torch.tensor([100.0, 1, 2, 3, 4, 5, 6]).view(1, 7, 1)
    cls_attn = torch.tensor([0.0, 0.1, 0.5, 0.05, 0.3, 0.02, 0.03]).view(1, 1, 7)
    keys = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 0.1], [1, 1], [0, 1], [0.1, 1]]).view(1, 1, 7, 2)
    return hidden, cls_attn, keys


def test_visionzip_cls_counts_in_dominant_and_target_is_not_averaged():
    hidden, cls_attn, keys = _vz_hand()
    tokens, kept = icctp.visionzip_compress(hidden, cls_attn, keys, dominant=3, contextual=2)
    # dominant 3 = CLS + patches 2 and 4; rest [1, 3, 5, 6], targets every 2nd: 1 and 5; 3 joins 1, 6 joins 5
    assert kept.tolist() == [[0, 2, 4]]
    assert tokens.flatten().tolist() == [100.0, 2.0, 4.0, 1 + 3.0, 5 + 6.0]
    tokens, _ = icctp.visionzip_compress(hidden, cls_attn, keys, dominant=3, contextual=1)
    assert tokens[0, -1, 0].item() == pytest.approx(1 + (3 + 5 + 6) / 3)  # target + mean of its three joiners


def test_visionzip_official_splits_see_the_budget_cls_included():
    assert [visionzip_split(b) for b in (64, 128, 192, 32)] == [(54, 10), (108, 20), (162, 30), (27, 5)]
    hidden, cls_attn, keys = vz_inputs(B=1, N=576)
    tokens, kept = icctp.visionzip_compress(hidden, cls_attn, keys, *visionzip_split(64))
    assert tokens.shape[1] == 64 and kept.shape[1] == 54 and kept[0, 0] == 0


def test_visionzip_bad_counts_raise():
    hidden, cls_attn, keys = vz_inputs(B=1, N=10)
    with pytest.raises(ValueError, match="dominant"):
        icctp.visionzip_compress(hidden, cls_attn, keys, 0, 2)
    with pytest.raises(ValueError, match="contextual"):
        icctp.visionzip_compress(hidden, cls_attn, keys, 5, 7)
    with pytest.raises(ValueError, match="keys"):
        icctp.visionzip_compress(hidden, cls_attn, keys[:, :2], 5, 1)


def test_visionzip_low_precision_returns_input_dtype():
    hidden, cls_attn, keys = vz_inputs(B=2)
    tokens, kept = icctp.visionzip_compress(hidden.bfloat16(), cls_attn.bfloat16(), keys.bfloat16(), 20, 5)
    assert tokens.dtype == torch.bfloat16 and kept.shape == (2, 20)


# ---------------------------------------------------------------- ToMe


def tome_inputs(B=3, T=41, C=6, c=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, C, generator=g), torch.randn(B, T, c, generator=g), \
        torch.randint(1, 5, (B, T, 1), generator=g).float()


@pytest.mark.parametrize("r", [0, 1, 7, 20, 30])
@pytest.mark.parametrize("class_token", [True, False])
@pytest.mark.parametrize("with_size", [False, True])
def test_tome_merge_equals_official_per_sample(r, class_token, with_size):
    x, metric, size = tome_inputs()
    size = size if with_size else None
    merged, new_size = icctp.tome_merge(x, metric, r, size, class_token)
    for b in range(3):
        ref_x, ref_size = tome_one(x[b], metric[b], r, None if size is None else size[b], class_token)
        torch.testing.assert_close(merged[b], ref_x, atol=ATOL, rtol=0)
        assert torch.equal(new_size[b], ref_size)
        alone = icctp.tome_merge(x[b : b + 1], metric[b : b + 1], r, None if size is None else size[b : b + 1],
                                 class_token)
        assert torch.equal(alone[0][0], merged[b]) and torch.equal(alone[1][0], new_size[b])
    expected = x.shape[1] - min(r, (x.shape[1] - class_token) // 2)
    assert merged.shape == (3, expected, 6) and new_size.sum(1).eq(x.shape[1] if size is None else size.sum(1)).all()


def test_tome_merge_order_and_size_weighting_by_hand():
    x = torch.arange(5.0).view(1, 5, 1)
    # A = positions 0 (CLS), 2, 4; B = 1, 3. Position 2 matches 3 exactly, position 4 matches 1 less well.
    metric = torch.tensor([[1.0, 0], [0.6, 0.8], [0, 1], [0, 1], [1, 0]]).view(1, 5, 2)
    out, size = icctp.tome_merge(x, metric, r=1)
    assert out.flatten().tolist() == [0.0, 4.0, 1.0, 2.5]  # unmerged A ascending (CLS first), then every B
    assert size.flatten().tolist() == [1.0, 1.0, 1.0, 2.0]
    out, size = icctp.tome_merge(x, metric, r=1, size=torch.tensor([1.0, 1, 3, 1, 1]).view(1, 5, 1))
    assert out[0, 3, 0].item() == pytest.approx((2 * 3 + 3 * 1) / 4) and size[0, 3, 0].item() == 4.0
    out, size = icctp.tome_merge(x, metric, r=5)  # capped at (5 - 1) // 2 = 2: CLS never merges
    assert out.flatten().tolist() == [0.0, (1 + 4) / 2, 2.5]


def test_tome_attention_log_size_equals_duplicated_tokens():
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 2, 4, 3, generator=g) for _ in range(3))
    out, metric = icctp.tome_attention(q, k, v)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 4, 6)
    torch.testing.assert_close(out, ref, atol=ATOL, rtol=0)
    assert torch.equal(metric, k.mean(1))
    # a key of size 2 attracts the attention of the same key present twice
    size = torch.tensor([1.0, 2.0, 1.0, 1.0]).view(1, 4, 1).expand(2, 4, 1)
    weighted, _ = icctp.tome_attention(q, k, v, size)
    dup = [0, 1, 1, 2, 3]
    ref = torch.nn.functional.scaled_dot_product_attention(q, k[:, :, dup], v[:, :, dup])
    torch.testing.assert_close(weighted, ref.transpose(1, 2).reshape(2, 4, 6), atol=ATOL, rtol=0)


def test_tome_parse_r_by_hand():
    assert icctp.tome_parse_r(4, 3) == [3, 3, 3, 3]
    assert icctp.tome_parse_r(4, (4, -1)) == [8, 5, 2, 0]  # decreasing: from int(4 * 2) to 0 in thirds
    assert icctp.tome_parse_r(4, (4, 0.0)) == [4, 4, 4, 4]
    assert icctp.tome_parse_r(4, [5, 1]) == [5, 1, 0, 0]


@pytest.mark.parametrize("keep", [1, 16, 32, 64, 128, 192, 575, 576])
def test_tome_schedule_reaches_the_budget_exactly(keep):
    schedule = icctp.tome_schedule(23, 577, keep)
    tokens = 577
    for r in schedule:
        assert 0 <= r <= (tokens - 1) // 2
        tokens -= r
    assert tokens == keep + 1 and len(schedule) == 23
    assert max(schedule) - min(schedule) <= 1 or keep <= 16  # constant r (+1 early) unless the tail must double
    if keep == 64:
        assert schedule == [23] * 6 + [22] * 17
    with pytest.raises(ValueError, match="cannot merge"):
        icctp.tome_schedule(2, 577, 16)


# ---------------------------------------------------------------- PruMerge / PruMerge+


def pm_inputs(B=3, N=576, C=16, seed=0, peaks=12):
    """Keys whose CLS attention has a few outliers (as real CLIP's has)."""
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(B, N, C, generator=g)
    keys = torch.randn(B, N + 1, C, generator=g)
    cls_query = torch.randn(B, C, generator=g)
    for b in range(B):
        top = torch.randperm(N, generator=g)[: peaks + b] + 1
        keys[b, top] += 3.0 * cls_query[b] / cls_query[b].norm()
    return features, keys, cls_query


def test_outlier_ratio_equals_numpy_percentile():
    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        n = [576, 33, 100, 7][trial % 4]
        row = (torch.randn(n, generator=g) * (1 + trial % 5)).softmax(0)
        if trial % 3 == 0:
            row = torch.round(row * 1000) / 1000  # ties at the quartiles
        assert outlier_ratio(row) == outlier_ratio_numpy(row)
    values = torch.tensor([1.0] * 30 + [2.0, 2.0, 10.0, 20.0, 30.0, 40.0])  # Q1 = Q3 = 1: six above
    assert outlier_ratio(values) == 6 / 36


@pytest.mark.parametrize("plus", [True, False])
@pytest.mark.parametrize("adaptive,ratio", [(True, 1 / 8), (False, 1 / 8), (False, 1 / 16)])
def test_prumerge_equals_official_per_sample(plus, adaptive, ratio):
    features, keys, cls_query = pm_inputs()
    fn = icctp.prumerge_plus if plus else icctp.prumerge
    out = fn(features, keys, cls_query, adaptive=adaptive, ratio=ratio)
    assert len(out) == 3
    for b in range(3):
        ref = prumerge_one(features[b], keys[b], cls_query[b], adaptive, ratio, plus)
        assert out[b].shape == ref.shape
        torch.testing.assert_close(out[b], ref, atol=ATOL, rtol=0)
        alone = fn(features[b : b + 1], keys[b : b + 1], cls_query[b : b + 1], adaptive=adaptive, ratio=ratio)
        assert torch.equal(alone[0], out[b])
    if adaptive:  # the count is per image: images with more outliers keep more
        assert len({o.shape[0] for o in out}) > 1


@pytest.mark.parametrize("ratio,count", [(1 / 8, 145), (1 / 4, 289), (1 / 16, 73)])
def test_prumerge_plus_fixed_branch_counts(ratio, count):
    features, keys, cls_query = pm_inputs(B=1)
    assert icctp.prumerge_plus(features, keys, cls_query, adaptive=False, ratio=ratio)[0].shape[0] == count
    with pytest.raises(ValueError, match="equal"):
        icctp.prumerge_plus(features, keys, cls_query, adaptive=False, ratio=1 / 9.5)


def _attention_keys(logits: torch.Tensor):
    """features, keys, cls_query whose PruMerge CLS attention is softmax(logits) over the N patches
    (the CLS key gets -inf-like logit) and whose key cosines are all equal to 1 (one direction)."""
    N = logits.numel()
    C = 4
    cls_query = torch.tensor([[1.0, 0, 0, 0]])
    keys = torch.zeros(1, N + 1, C)
    keys[0, 1:, 0] = logits * C**0.5
    keys[0, 0, 0] = -1e4
    keys[0, :, 1] = 1e-3  # keys stay non-zero
    return keys, cls_query


def test_prumerge_plus_adaptive_count_and_spatial_extras_by_hand():
    N = 576
    logits = torch.zeros(N)
    peaks = [24, 48, 5, 7, 100, 200, 300, 400]  # 8 outliers -> ratio 1/72, stride int(72 / 3) = 24
    logits[peaks] = 5.0
    keys, cls_query = _attention_keys(logits)
    features = torch.randn(1, N, 3, generator=torch.Generator().manual_seed(0))
    out = icctp.prumerge_plus(features, keys, cls_query)[0]
    grid = set(range(0, 575, 24))  # 24 positions, 24 and 48 already chosen
    assert out.shape[0] == 8 + len(grid - set(peaks)) + 1 == 31
    assert icctp.prumerge(features, keys, cls_query)[0].shape[0] == 8 + 1


def test_prumerge_merge_weights_are_unnormalised_and_extra_token_sums_the_rest():
    N = 33  # one chosen token: its 32 nearest are all the others
    logits = torch.linspace(0, 1, N)
    keys, cls_query = _attention_keys(logits)
    features = torch.randn(1, N, 3, generator=torch.Generator().manual_seed(1))
    out = icctp.prumerge(features, keys, cls_query, adaptive=False, ratio=1 / N)[0]
    attn = logits.softmax(0) * (1 / (1 + torch.exp(torch.tensor(-1e4)) / logits.exp().sum()))
    top = N - 1  # the highest logit
    rest = [j for j in range(N) if j != top]
    extra = (attn[rest, None] * features[0, rest]).sum(0)
    assert attn[rest].sum() < 0.99  # the weights do not sum to one and are not renormalised
    torch.testing.assert_close(out[1], extra, atol=ATOL, rtol=0)
    torch.testing.assert_close(out[0], features[0, top] + extra, atol=ATOL, rtol=0)


def test_prumerge_complement_quirk_with_duplicates():
    from tests.official_reference import complement_official

    idx = torch.tensor([4, 12, 4, 20])  # top-k 4 and 12, spatial 4 and 20: 4 appears twice
    compl = complement_official(idx, 24)
    assert compl.tolist() == [1, 2, 3] + [5, 6, 7, 8, 9, 10, 11] + list(range(13, 20)) + [21, 22, 23]  # 0 dropped
    assert compl.numel() == 24 - 4


def test_prumerge_edge_cases_raise():
    features, keys, cls_query = pm_inputs(B=1, N=40)
    flat = icctp.prumerge_plus(features, torch.zeros(1, 41, 16), cls_query)[0]  # no outlier: ratio 1/N
    assert flat.shape[0] == 1 + len(set(range(0, 39, 13)) - {0}) + 1  # top token 0 (ties: lowest), 0/13/26, extra
    assert icctp.prumerge(features, torch.zeros(1, 41, 16), cls_query)[0].shape[0] == 1  # only the extra token
    with pytest.raises(ValueError, match="N >= 33"):
        icctp.prumerge(features[:, :20], keys[:, :21], cls_query, adaptive=False, ratio=0.5)
    with pytest.raises(ValueError, match="cls_query"):
        icctp.prumerge(features, keys, cls_query[:, :3])


def test_prumerge_low_precision_returns_input_dtype():
    features, keys, cls_query = pm_inputs(B=2)
    out = icctp.prumerge_plus(features.half(), keys.half(), cls_query.half())
    assert all(o.dtype == torch.float16 for o in out)
    assert np.isfinite(torch.cat(out).float().numpy()).all()
