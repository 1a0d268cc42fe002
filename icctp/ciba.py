"""CIBA (the paper's Eq. 3-4): a per-sample information bottleneck on one modality's features,
trained to keep what predicts the other modality's embedding; batched, pure torch.

It follows the official M2IB code (Wang, Rudner & Wilson, NeurIPS 2023; ``YingWANGG/M2IB``,
``scripts/iba.py``: ``InformationBottleneck.forward``, ``IBAInterpreter._train_bottleneck`` and
``calc_loss``; ``scripts/methods.py``: the read-out):

- mask ``lambda = sigmoid(alpha)`` over every token x channel of the features x, ``alpha`` starting
  at ``alpha0`` (5);
- bottlenecked features ``z = lambda * x + (1 - lambda) * eps``, ``eps ~ N(0, sigma^2)`` with the
  official ``sigma = 1`` (features not normalised; the prior is the noise distribution);
- compression: ``KL(N(lambda x, (1 - lambda)^2) || N(0, 1))`` per element, averaged over the
  sample's tokens x channels; relevance: the cosine between the pooled bottlenecked features (after
  the rest of the encoder) and the other modality's clean embedding, averaged over ``n_noise`` noise
  draws; loss ``beta * compression - relevance``;
- Adam (lr 1) on ``alpha`` only, ``steps`` (10) steps;
- read-out: the KL of the *last forward pass* (``alpha`` after ``steps - 1`` updates), summed over
  channels: one raw value per token, in nats (never min-max scaled here).

Where this departs from the official code: (1) a batch of samples trains at once, each with its own
``alpha``, its own noise generator (seeded per sample) and its own loss term; the batch loss is the
sum of the per-sample losses and Adam is elementwise, so a sample's result does not depend on its
batch-mates (padding tokens are masked out of its compression mean and must not reach its
relevance). (2) ``1 - lambda`` and ``log (1 - lambda)^2`` are computed as ``sigmoid(-alpha)`` and
``2 logsigmoid(-alpha)``: equal in exact arithmetic, without float32 cancellation when ``alpha``
grows. (3) ``sigma`` can be set: the paper lists it as a
hyperparameter, the official code stores a variance but always draws N(0, 1); ``sigma=None`` takes
each sample's feature RMS (over its tokens x channels), for features whose scale is far from 1
(a language model's input embeddings). It is the same as dividing the features by sigma.
(4) Only the mask is a leaf of the graph: the caller runs the encoder's prefix once without
gradients, the official loop recomputed both encoders in full at every step.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Relevance = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class BottleneckConfig:
    """The official defaults: beta 0.1, alpha0 5, 10 Adam steps at lr 1, 10 noise samples, noise std 1
    (``sigma=None``: each sample's feature RMS)."""

    beta: float = 0.1
    alpha0: float = 5.0
    steps: int = 10
    lr: float = 1.0
    n_noise: int = 10
    sigma: float | None = 1.0

    def __post_init__(self):
        if self.steps < 1 or self.n_noise < 1:
            raise ValueError(f"steps and n_noise must be >= 1, got {self.steps} and {self.n_noise}")
        if self.sigma is not None and self.sigma <= 0:
            raise ValueError(f"sigma must be > 0 (or None: each sample's feature RMS), got {self.sigma}")
        if self.beta < 0 or self.lr <= 0:
            raise ValueError(f"beta must be >= 0 and lr > 0, got {self.beta} and {self.lr}")


@dataclass
class BottleneckResult:
    """Per sample of a batch of B with up to n tokens (padding: 0).

    capacity: (B, n) KL of the read-out pass summed over channels, nats; keep: (B, n) mean lambda over
    channels at the read-out; relevance: (B,) mean cosine of the read-out pass; compression: (B,)
    mean KL per element of the read-out pass.
    """

    capacity: torch.Tensor
    keep: torch.Tensor
    relevance: torch.Tensor
    compression: torch.Tensor


def kl_capacity(x: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Per-element ``KL(N(lambda x, (1 - lambda)^2) || N(0, 1))`` with ``lambda = sigmoid(alpha)``,
    i.e. ``-(1 + log var - mu^2 - var) / 2``; same shape as ``x``."""
    lam = torch.sigmoid(alpha)
    log_var = 2.0 * F.logsigmoid(-alpha)
    return -0.5 * (1.0 + log_var - (lam * x) ** 2 - log_var.exp())


def sample_noise(generators: Sequence[torch.Generator], lengths: Sequence[int], n_noise: int, n: int, d: int,
                 dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(B, S, n, d) standard normal noise; sample b draws (S, n_b, d) from its own generator, zeros pad it."""
    out = torch.zeros(len(generators), n_noise, n, d, dtype=dtype, device=device)
    for b, (gen, length) in enumerate(zip(generators, lengths, strict=True)):
        out[b, :, :length] = torch.randn(n_noise, length, d, generator=gen, dtype=dtype, device=device)
    return out


def fit_bottleneck(features: torch.Tensor, mask: torch.Tensor, relevance: Relevance, seeds: Sequence[int],
                   config: BottleneckConfig = BottleneckConfig()) -> BottleneckResult:
    """Train one bottleneck per sample on ``features`` (B, n, d) and read out its capacity per token.

    mask: (B, n) bool, True on a sample's tokens (each sample's tokens first, padding after);
    relevance: ``z`` (B, S, n, d) bottlenecked features -> (B, S) cosine per sample and noise draw
    (sample b's value may depend only on ``z[b]``'s unpadded tokens); seeds: one per sample, seeding
    its noise generator. Features are detached; half precision is computed in float32.
    """
    if features.ndim != 3 or mask.shape != features.shape[:2]:
        raise ValueError(f"features must be (B, n, d) with mask (B, n), got {tuple(features.shape)} "
                         f"and {tuple(mask.shape)}")
    if len(seeds) != features.shape[0]:
        raise ValueError(f"one seed per sample: {len(seeds)} seeds for {features.shape[0]} samples")
    lengths = [int(m) for m in mask.sum(1)]
    if any(not mask[b, :k].all() for b, k in enumerate(lengths)) or min(lengths) < 1:
        raise ValueError("each sample needs >= 1 token and its tokens must come before its padding")
    x = features.detach()
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    batch, n, d = x.shape
    valid = mask.to(x.dtype)[..., None]  # (B, n, 1)
    denom = torch.tensor(lengths, dtype=x.dtype, device=x.device) * d  # (B,)
    if config.sigma is None:
        sigma = ((x * valid) ** 2).sum((1, 2)).div(denom).sqrt().clamp_min(1e-12)[:, None, None]  # (B, 1, 1)
    else:
        sigma = torch.full((batch, 1, 1), config.sigma, dtype=x.dtype, device=x.device)
    x = x / sigma
    generators = [torch.Generator(device=x.device).manual_seed(int(s)) for s in seeds]
    alpha = torch.full_like(x, config.alpha0, requires_grad=True)
    optimizer = torch.optim.Adam([alpha], lr=config.lr)
    for _ in range(config.steps):
        optimizer.zero_grad()
        kl = kl_capacity(x, alpha) * valid  # (B, n, d)
        lam = torch.sigmoid(alpha)
        noise = sample_noise(generators, lengths, config.n_noise, n, d, x.dtype, x.device)
        z = lam[:, None] * x[:, None] + torch.sigmoid(-alpha)[:, None] * noise  # (B, S, n, d)
        fit = relevance(z * valid[:, None] * sigma[:, None]).mean(1)  # (B,)
        compression = kl.sum((1, 2)) / denom  # (B,)
        (config.beta * compression - fit).sum().backward()
        optimizer.step()
        readout = (kl.detach(), lam.detach(), fit.detach(), compression.detach())
    kl, lam, fit, compression = readout
    keep = (lam * valid).mean(-1)
    return BottleneckResult(kl.sum(-1), keep, fit, compression)


def masked_mean(z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the token axis (-2) of ``z`` (..., n, d) where ``mask`` (broadcastable to (..., n)) is True."""
    weights = mask.to(z.dtype)[..., None]
    return (z * weights).sum(-2) / weights.sum(-2).clamp_min(1.0)
