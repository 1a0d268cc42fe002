"""Budget arithmetic: exact_allocation (vs the fixpoint reference), scaled_budget, split_budget."""
from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from reference_algorithm import reference_exact_allocation

from icctp.budget import exact_allocation, scaled_budget, split_budget


def allocate(sizes: list[list[int]], total: int, priority: list[list[int]] | None = None) -> list[list[int]]:
    s = torch.tensor(sizes)
    p = torch.tensor(priority) if priority is not None else torch.arange(s.shape[1]).expand_as(s)
    return exact_allocation(s, total, p).tolist()


def test_hand_computed_allocations():
    # quotas 3, 1.5, 1.5: remainders tie -> lower cluster index gets the extra token
    assert allocate([[6, 3, 3]], 6) == [[3, 2, 1]]
    # minimum one: sizes (100, 1, 1), total 3 -> (1, 1, 1); total 4 -> (2, 1, 1)
    assert allocate([[100, 1, 1]], 3) == [[1, 1, 1]]
    assert allocate([[100, 1, 1]], 4) == [[2, 1, 1]]
    # fewer tokens than clusters: by priority (lower value first), empty clusters never served
    assert allocate([[5, 0, 2, 7]], 2, [[2, 0, 1, 0]]) == [[0, 0, 1, 1]]
    # everything: total == sum(sizes) gives every cluster its size
    assert allocate([[4, 0, 9, 1]], 14) == [[4, 0, 9, 1]]
    # water-filling: (10, 2, 1), total 6: 1 fixed for size 1, then 5 over (10, 2) -> 4.17, 0.83 < 1
    # -> fix size 2 too: 4 over (10,) -> (4, 1, 1)
    assert allocate([[10, 2, 1]], 6) == [[4, 1, 1]]
    # zero total and all-empty rows
    assert allocate([[3, 3], [0, 0]], 0) == [[0, 0], [0, 0]]


def test_rows_are_independent():
    sizes = [[6, 3, 3], [100, 1, 1], [0, 5, 0]]
    together = allocate(sizes, 3)
    assert together == [allocate([row], 3)[0] for row in sizes]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_equals_fixpoint_reference(data):
    K = data.draw(st.integers(1, 9))
    sizes = data.draw(st.lists(st.integers(0, 40), min_size=K, max_size=K))
    total = data.draw(st.integers(0, sum(sizes)))
    priority = data.draw(st.permutations(list(range(K))))
    got = allocate([sizes], total, [priority])[0]
    assert got == reference_exact_allocation(sizes, total, priority)
    assert sum(got) == total
    assert all(0 <= k <= s for k, s in zip(got, sizes))
    nonempty = sum(s > 0 for s in sizes)
    if total >= nonempty:
        assert all(k >= 1 for k, s in zip(got, sizes) if s > 0)


def test_batched_rows_equal_reference_random():
    rng = random.Random(5)
    B, K = 64, 6
    sizes = [[rng.choice([0, 1, 2, rng.randint(0, 60)]) for _ in range(K)] for _ in range(B)]
    total = min(sum(r) for r in sizes)
    priority = [rng.sample(range(K), K) for _ in range(B)]
    got = allocate(sizes, total, priority)
    assert got == [reference_exact_allocation(s, total, p) for s, p in zip(sizes, priority)]


def test_exact_allocation_rejects_bad_shapes():
    with pytest.raises(ValueError, match="sizes and priority"):
        exact_allocation(torch.ones(2, 3, dtype=torch.long), 2, torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="total"):
        exact_allocation(torch.ones(2, 3, dtype=torch.long), -1, torch.zeros(2, 3, dtype=torch.long))


def test_scaled_budget():
    assert scaled_budget(64, 576) == 64
    assert scaled_budget(64, 2880) == 320
    assert scaled_budget(128, 2880) == 640
    assert scaled_budget(32, 2880) == 160
    assert scaled_budget(64, 100) == 11  # 11.11
    assert scaled_budget(9, 32) == 1  # 0.5 -> 0 (half to even) -> at least 1
    assert scaled_budget(27, 32) == 2  # 1.5 -> 2 (half to even)
    assert scaled_budget(576, 200, reference=100) == 200  # capped at n_visual
    with pytest.raises(ValueError, match="budget"):
        scaled_budget(0, 576)
    with pytest.raises(ValueError, match="n_visual"):
        scaled_budget(64, 0)


def test_split_budget():
    assert split_budget(320, [576, 576, 576, 576, 576]) == [64] * 5
    assert split_budget(10, [5, 3, 2]) == [5, 3, 2]
    assert split_budget(100, [5, 3, 2]) == [5, 3, 2]  # capped at the total size
    assert split_budget(5, [5, 3, 2]) == [3, 1, 1]  # 2.5, 1.5, 1.0 -> ties to the lower index
    assert split_budget(3, [1, 1, 1, 1]) == [1, 1, 1, 0]
    assert split_budget(0, [4, 4]) == [0, 0]
    assert split_budget(7, []) == []
    with pytest.raises(ValueError, match="total"):
        split_budget(-1, [3])
    with pytest.raises(ValueError, match="sizes"):
        split_budget(3, [3, -1])


@settings(max_examples=200, deadline=None)
@given(total=st.integers(0, 500), sizes=st.lists(st.integers(0, 300), max_size=8))
def test_split_budget_contract(total, sizes):
    shares = split_budget(total, sizes)
    assert sum(shares) == min(total, sum(sizes))
    assert all(0 <= s <= size for s, size in zip(shares, sizes))
    if sum(sizes) and total < sum(sizes):
        # within one token of the exact proportional share
        assert all(abs(s - total * size / sum(sizes)) < 1 for s, size in zip(shares, sizes))
