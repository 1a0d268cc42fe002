"""Finished rows leave the decode batch: the tokens equal those of the loop that keeps every row to
the end, on scripted runners (exact step sizes) and on the tiny models with mixed answer lengths and
per-row kept counts, for the plain path and FastV."""
from __future__ import annotations

import pytest
import torch

from icctp.layer_pruners import FastVPruner, SparseVLMPruner
from pipeline.model import compat, generation, layer_prune, steps

EOS, PAD, VOCAB = 4, 0, 5


class Rows:
    """A stand-in KV cache that records which batch rows it keeps."""

    def __init__(self, n: int):
        self.rows = torch.arange(n)

    def batch_select_indices(self, index):
        self.rows = self.rows[index]


class Scripted:
    """Logits whose argmax follows ``script[b]``; ``row_state`` None keeps every row (today's loop)."""

    row_state = ("mask",)

    def __init__(self, script, compact=True):
        self.script, self.t, self.sizes = script, 0, []
        self.cache, self.mask = Rows(len(script)), torch.arange(len(script))[:, None]
        if not compact:
            self.row_state = None

    def _logits(self):
        out = torch.zeros(len(self.cache.rows), VOCAB)
        for i, b in enumerate(self.cache.rows.tolist()):
            assert self.mask[i, 0] == b  # the mask rows follow the cache rows
            out[i, self.script[b][min(self.t, len(self.script[b]) - 1)]] = 1.0
        return out

    def prefill(self, embeds, mask, positions):
        return self._logits()

    def step(self, embeds, positions):
        self.t += 1
        self.sizes.append(embeds.shape[0])
        assert positions.shape == (embeds.shape[0], 1)
        return self._logits()


class Embed(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, 3)

    def get_input_embeddings(self):
        return self.embed


def decode(script, max_new_tokens, compact):
    runner = Scripted(script, compact)
    n = len(script)
    out = generation.greedy(Embed(), torch.zeros(n, 2, 3), torch.ones(n, 2, dtype=torch.long),
                            torch.arange(2).expand(n, 2), max_new_tokens, EOS, PAD, runner=runner)
    return out.tokens.tolist(), runner.sizes


def test_finished_rows_leave_and_the_tokens_are_unchanged():
    script = [[1, EOS], [2, 3, 3, EOS], [1, 2, 3, 1, 2, 3], [EOS]]
    tokens, sizes = decode(script, 6, compact=True)
    assert tokens == [[1, EOS, PAD, PAD, PAD, PAD], [2, 3, 3, EOS, PAD, PAD], [1, 2, 3, 1, 2, 3],
                      [EOS, PAD, PAD, PAD, PAD, PAD]]
    assert sizes == [3, 2, 2, 1, 1]  # row 3 leaves after step 0, row 0 after step 1, row 1 after step 3
    assert decode(script, 6, compact=False) == (tokens, [4, 4, 4, 4, 4])


def test_the_loop_still_ends_when_every_row_finished():
    tokens, sizes = decode([[1, EOS, 3], [EOS, 2]], 1024, compact=True)
    assert tokens == [[1, EOS], [EOS, PAD]] and sizes == [1]


class KeepAll(generation.PlainRunner):
    row_state = None


class LayerPruneKeepAll(layer_prune.LayerPruneRunner):
    row_state = None


def mixed_eos(tokens: torch.Tensor) -> int:
    """A token id that ends the rows of ``tokens`` (B, T) at the most distinct steps (some rows never)."""
    best, best_score = None, -1
    for t in tokens.unique().tolist():
        first = {row.index(t) if t in row else None for row in tokens.tolist()}
        score = len(first) + (None in first)
        if score > best_score:
            best, best_score = t, score
    return best


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["llava15", "llava_next"])
@pytest.mark.parametrize("in_llm", [None, "fastv", "sparsevlm"])
def test_tiny_model_tokens_equal_the_loop_that_keeps_every_row(fixtures_root, kind, in_llm):
    from model_batches import fixture_batch

    from pipeline.model import load_vlm

    vlm = load_vlm(fixtures_root / "models" / kind)
    prepared = fixture_batch(vlm, fixtures_root, 7, with_centers=False)
    rows = prepared.samples
    visuals = steps.encode(vlm.model, [prepared.images[r.image_key] for r in rows])
    kept = [steps.Kept(torch.arange(min(v.n_visual, 7 + 40 * i))) for i, v in enumerate(visuals)]  # kept differ
    inputs = steps.assemble(vlm.model, [r.text_ids for r in rows], [r.image_pos for r in rows], visuals, kept)
    n_layers = len(compat.decoder_layers(vlm.model))

    def run(eos, compact):
        if in_llm:  # a fresh pruner per prefill: SparseVLM keeps per-prefill state
            pruner = (FastVPruner(32, n_layers, K=1) if in_llm == "fastv"
                      else SparseVLMPruner(32, n_layers, layers=[0, 1], budget_mode="kept"))
            runner = (layer_prune.LayerPruneRunner if compact else LayerPruneKeepAll)(
                vlm.model, pruner, [r.image_pos for r in rows], [k.n_kept for k in kept])
        else:
            runner = (generation.PlainRunner if compact else KeepAll)(vlm.model)
        return steps.generate(vlm.model, inputs, 12, eos, vlm.pad_id, runner=runner).tokens

    eos = mixed_eos(run(-1, compact=False))
    reference = run(eos, compact=False)
    lengths = [row.index(eos) + 1 if eos in row else len(row) for row in reference.tolist()]
    assert min(lengths) < 12 and len(set(lengths)) >= 2, lengths  # mixed short and long answers
    assert torch.equal(run(eos, compact=True), reference), lengths
