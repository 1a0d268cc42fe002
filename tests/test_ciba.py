"""icctp.ciba: the batched bottleneck equals the official per-sample loop, and a sample's result does
not depend on its batch-mates."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from icctp.ciba import BottleneckConfig, fit_bottleneck, kl_capacity, masked_mean

D, P = 6, 4


def encoder(seed: int = 0):
    """A small pooled encoder: tanh(z W) mean-pooled over a sample's tokens."""
    weight = torch.randn(D, P, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return lambda z, mask: masked_mean(torch.tanh(z @ weight), mask)


def batched_relevance(targets, mask):
    enc = encoder()
    return lambda z: F.cosine_similarity(enc(z, mask[:, None]), targets[:, None], dim=-1, eps=1e-6)


def official_loop(x: torch.Tensor, target: torch.Tensor, seed: int, config: BottleneckConfig) -> torch.Tensor:
    """M2IB's ``IBAInterpreter._train_bottleneck`` + ``InformationBottleneck.forward`` + read-out, literally,
    for one sample (n, d): alpha (1, n, d), input expanded to the noise batch, capacity mean, cosine mean."""
    enc = encoder()
    generator = torch.Generator().manual_seed(seed)
    alpha = torch.nn.Parameter(torch.full((1, *x.shape), config.alpha0, dtype=x.dtype))
    optimizer = torch.optim.Adam([alpha], lr=config.lr)
    batch = x.expand(config.n_noise, -1, -1)
    for _ in range(config.steps):
        optimizer.zero_grad()
        lamb = torch.sigmoid(alpha).expand(batch.shape[0], batch.shape[1], -1)
        masked_mu, masked_var = batch * lamb, (1 - lamb) ** 2
        capacity = -0.5 * (1 + torch.log(masked_var) - masked_mu ** 2 - masked_var)
        eps = torch.randn(batch.shape, generator=generator, dtype=x.dtype)
        t = masked_mu + masked_var.sqrt() * eps
        out = enc(t, torch.ones(t.shape[:2], dtype=torch.bool))
        fitting = F.cosine_similarity(out, target.expand_as(out), dim=-1, eps=1e-6).mean()
        (config.beta * capacity.mean() - fitting).backward()
        optimizer.step()
    return torch.nansum(capacity.mean(0), -1).detach()


def padded_batch(lengths, seed=1):
    gen = torch.Generator().manual_seed(seed)
    n = max(lengths)
    x = torch.zeros(len(lengths), n, D, dtype=torch.float64)
    mask = torch.zeros(len(lengths), n, dtype=torch.bool)
    for b, k in enumerate(lengths):
        x[b, :k] = torch.randn(k, D, generator=gen, dtype=torch.float64) * 1.5
        mask[b, :k] = True
    targets = torch.randn(len(lengths), P, generator=gen, dtype=torch.float64)
    return x, mask, targets


def test_kl_capacity_matches_the_hand_computed_value():
    # alpha 0: lambda 1/2, var 1/4; x 2: mu 1 -> -(1 + log 1/4 - 1 - 1/4) / 2
    got = kl_capacity(torch.tensor([2.0], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64))
    assert got.item() == pytest.approx(-0.5 * (math.log(0.25) - 0.25), abs=1e-12)


def test_batched_bottleneck_equals_the_official_loop_per_sample():
    config = BottleneckConfig(n_noise=4)
    x, mask, targets = padded_batch([5, 3, 4])
    seeds = [11, 22, 33]
    result = fit_bottleneck(x, mask, batched_relevance(targets, mask), seeds, config)
    for b, k in enumerate([5, 3, 4]):
        reference = official_loop(x[b, :k], targets[b], seeds[b], config)
        torch.testing.assert_close(result.capacity[b, :k], reference, rtol=1e-9, atol=1e-9)
        assert torch.all(result.capacity[b, k:] == 0)


def test_a_sample_is_the_same_alone_and_in_a_batch():
    x, mask, targets = padded_batch([6, 2, 4, 6])
    seeds = [5, 6, 7, 8]
    together = fit_bottleneck(x, mask, batched_relevance(targets, mask), seeds)
    for b in range(4):
        k = int(mask[b].sum())
        alone_mask = mask[b:b + 1, :k]
        alone = fit_bottleneck(x[b:b + 1, :k], alone_mask, batched_relevance(targets[b:b + 1], alone_mask), [seeds[b]])
        torch.testing.assert_close(together.capacity[b, :k], alone.capacity[0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(together.keep[b, :k], alone.keep[0], rtol=1e-10, atol=1e-10)
        assert together.relevance[b].item() == pytest.approx(alone.relevance[0].item(), abs=1e-10)


def test_the_seed_not_the_batch_position_decides_the_noise():
    x, mask, targets = padded_batch([4, 4])
    one = fit_bottleneck(x, mask, batched_relevance(targets, mask), [1, 2])
    swapped = fit_bottleneck(x.flip(0), mask, batched_relevance(targets.flip(0), mask), [2, 1])
    torch.testing.assert_close(one.capacity, swapped.capacity.flip(0), rtol=1e-10, atol=1e-10)
    other = fit_bottleneck(x, mask, batched_relevance(targets, mask), [1, 3])
    assert torch.equal(other.capacity[0], one.capacity[0]) and not torch.equal(other.capacity[1], one.capacity[1])


def test_capacity_concentrates_on_the_one_token_the_relevance_reads():
    x, mask, targets = padded_batch([7])
    weight = torch.randn(D, P, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def reads_token_4(z):
        return F.cosine_similarity(torch.tanh(z[:, :, 4] @ weight), targets[:, None], dim=-1)

    result = fit_bottleneck(x, mask, reads_token_4, [0])
    assert int(result.capacity[0].argmax()) == 4
    others = torch.cat([result.keep[0, :4], result.keep[0, 5:]])
    assert result.keep[0, 4] > 2 * others.max()


def test_sigma_rms_equals_unit_noise_on_features_scaled_to_unit_rms():
    x, mask, targets = padded_batch([5])
    x = x * 0.01
    rms = x.pow(2).mean().sqrt()
    scaled = fit_bottleneck(x, mask, batched_relevance(targets, mask), [9], BottleneckConfig(sigma=None))

    def relevance_on_unscaled(z):  # the relevance sees features in their own units
        return batched_relevance(targets, mask)(z * rms)

    unit = fit_bottleneck(x / rms, mask, relevance_on_unscaled, [9], BottleneckConfig(sigma=1.0))
    torch.testing.assert_close(scaled.capacity, unit.capacity, rtol=1e-9, atol=1e-9)


def test_bad_inputs_are_refused():
    x, mask, targets = padded_batch([3, 2])
    with pytest.raises(ValueError, match="before its padding"):
        fit_bottleneck(x, mask.flip(1), batched_relevance(targets, mask), [1, 2])
    with pytest.raises(ValueError, match="one seed per sample"):
        fit_bottleneck(x, mask, batched_relevance(targets, mask), [1])
    with pytest.raises(ValueError, match="steps"):
        BottleneckConfig(steps=0)
