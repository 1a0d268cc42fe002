"""The committed toy-world LLaVA through the real adapter: the noun path (spaCy phrases -> token
offsets -> embedding centers -> clusters) is what makes ICCTP keep the asked object.

On fresh toy questions (VQAv2 colour/pattern + POPE yes/no, in their real schemas) ICCTP keeps a
clearly larger share of the asked object's patches than CLS top-k at 16 tokens; with the noun
centers replaced by random vectors, or with the phrase-to-token offsets shifted by one token, that
advantage is gone. The accuracy counterparts (full >= 90%, ICCTP >= CLS + 10 points at 16 tokens)
are expected failures for the committed checkpoint, which falls a little short of them
(docs/toyworld.md); they are strict, so a better checkpoint that passes them turns them red until
the marks are removed.
"""
from __future__ import annotations

import json

import pytest
import torch

import icctp.nouns
from pipeline.benchmarks import iter_samples
from pipeline.fixtures import tiny_model_path
from pipeline.fixtures import toyworld as tw
from pipeline.model import load_vlm
from pipeline.model import vlm as adapter
from pipeline.nlp import question_phrases

pytestmark = pytest.mark.slow

QUESTIONS = 60  # per benchmark
BUDGET = 16
UNDERTRAINED = pytest.mark.xfail(strict=True, reason="the committed checkpoint answers 87% at full and leads CLS "
                                 "by ~8 points at 16 tokens, short of the feasibility study's 100% and 23 points")


@pytest.fixture(scope="module")
def vlm():
    return load_vlm(tiny_model_path("toyworld"))


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    paths = tw.write_tables(tmp_path_factory.mktemp("toyworld"), seed=12, n=QUESTIONS)
    out = []
    for name, path in paths.items():
        for s in iter_samples(name, data_files={"test": str(path)}):
            targets = json.loads(s["targets"])
            out.append(dict(s, answer=targets["answers"][0] if name == "vqav2" else targets["answer"]))
    return out


def evaluate(vlm, samples, method: str, budget: int = BUDGET) -> dict[str, float]:
    """Exact-answer accuracy and mean kept share of the asked object's patches (spaCy phrases)."""
    correct, shares = 0, []
    for start in range(0, len(samples), 60):
        chunk = samples[start:start + 60]
        spans = question_phrases([s["question"] for s in chunk])
        outs = vlm.generate([{"image": s["image"], "prompt": s["prompt"], "question": s["question"],
                              "noun_spans": phrases} for s, (phrases, _) in zip(chunk, spans)],
                            method=method, budget=budget, max_new_tokens=4)
        assert all(o["error"] is None for o in outs)
        correct += sum(o["prediction"] == s["answer"] for o, s in zip(outs, chunk))
        shares += [len(set(o["kept_indices"]) & set(s["evidence_patches"])) / len(s["evidence_patches"])
                   for o, s in zip(outs, chunk) if s["evidence_patches"]]
    return {"accuracy": correct / len(samples), "coverage": sum(shares) / len(shares)}


@pytest.fixture(scope="module")
def scores(vlm, samples):
    return {m: evaluate(vlm, samples, m) for m in ("icctp", "cls")}


def advantage(scores, key="coverage") -> float:
    return scores["icctp"][key] - scores["cls"][key]


def test_spacy_phrases_map_to_the_attribute_words(vlm):
    from pipeline.nlp import load_spacy

    question = "What color is the striped object?"
    phrases = icctp.nouns.noun_phrases(load_spacy()(question))
    ids = icctp.nouns.phrase_token_ids(question, phrases, vlm.tokenizer)
    assert [vlm.tokenizer.convert_ids_to_tokens(g) for g in ids] == [["color"], ["striped", "object"]]


def test_icctp_keeps_more_of_the_asked_object_than_cls_at_16_tokens(scores):
    assert advantage(scores) >= 0.15, scores


def test_random_noun_centers_lose_the_advantage(vlm, samples, scores, monkeypatch):
    real = adapter.centers_from_groups
    gen = torch.Generator().manual_seed(0)

    def random_centers(*args, **kwargs):
        centers = real(*args, **kwargs)
        noise = torch.randn(centers.shape, generator=gen)
        return noise * centers.norm(dim=-1, keepdim=True) / noise.norm(dim=-1, keepdim=True)

    monkeypatch.setattr(adapter, "centers_from_groups", random_centers)
    sabotaged = evaluate(vlm, samples, "icctp")
    assert sabotaged["coverage"] - scores["cls"]["coverage"] <= advantage(scores) / 2, (sabotaged, scores)


def test_offsets_shifted_by_one_token_lose_the_advantage(vlm, samples, scores, monkeypatch):
    real = icctp.nouns._question_offsets

    def shifted(question, tokenizer):
        ids, offsets = real(question, tokenizer)
        return ids, [(0, 0)] + offsets[:-1]  # token i gets token i-1's span: a phrase maps to the tokens after it

    monkeypatch.setattr(icctp.nouns, "_question_offsets", shifted)
    sabotaged = evaluate(vlm, samples, "icctp")
    assert sabotaged["coverage"] - scores["cls"]["coverage"] <= advantage(scores) / 2, (sabotaged, scores)


@UNDERTRAINED
def test_full_model_answers_the_toy_questions(vlm, samples):
    assert evaluate(vlm, samples, "full", 576)["accuracy"] >= 0.9


@UNDERTRAINED
def test_icctp_answers_better_than_cls_at_16_tokens(scores):
    assert advantage(scores, "accuracy") >= 0.10, scores
