"""Greedy decoding stops for the whole batch once every sequence has emitted EOS."""
from __future__ import annotations

import torch

from pipeline.model.generation import greedy

EOS, PAD, VOCAB = 4, 0, 5


class ScriptedRunner:
    """Returns logits whose argmax follows ``script[b]`` per sample; counts the decode steps run."""

    def __init__(self, script: list[list[int]]):
        self.script, self.steps = script, 0

    def _logits(self, t: int) -> torch.Tensor:
        out = torch.zeros(len(self.script), VOCAB)
        for b, tokens in enumerate(self.script):
            out[b, tokens[min(t, len(tokens) - 1)]] = 1.0
        return out

    def prefill(self, embeds, mask, positions):
        return self._logits(0)

    def step(self, embeds, positions):
        self.steps += 1
        return self._logits(self.steps)


class TinyModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 3)

    def get_input_embeddings(self):
        return self.embed


def run(script, max_new_tokens):
    runner = ScriptedRunner(script)
    embeds, mask = torch.zeros(2, 3, 3), torch.ones(2, 3, dtype=torch.long)
    positions = torch.arange(3).expand(2, 3)
    out = greedy(TinyModel(), embeds, mask, positions, max_new_tokens, EOS, PAD, runner=runner)
    return out.tokens.tolist(), runner.steps


def test_loop_ends_when_every_sequence_emitted_eos():
    tokens, steps = run([[1, EOS, 3, 3], [2, 3, EOS, 3]], max_new_tokens=1024)
    assert tokens == [[1, EOS, PAD], [2, 3, EOS]]  # padded after its own EOS
    assert steps == 2  # two decode steps after prefill, not 1023


def test_loop_ends_at_the_limit_without_eos():
    tokens, steps = run([[1, 2, 3], [3, 3, 3]], max_new_tokens=2)
    assert tokens == [[1, 2], [3, 3]] and steps == 1
