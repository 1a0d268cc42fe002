"""Question noun phrases -> LLM token ids -> clustering centers (paper Eq. 8).

Pure functions: the caller passes a parsed spaCy ``Doc`` (or phrase strings), a fast tokenizer and
the LLM input-embedding matrix; nothing is loaded here.

Phrases are the spaCy noun chunks of the question with leading determiners, pronouns and
punctuation removed ("What color" -> "color", "the wooden bench" -> "wooden bench"; a chunk left
empty, e.g. "it", is dropped), plus NOUN/PROPN tokens outside every chunk, in question order,
de-duplicated case-insensitively (first occurrence kept). Each phrase's character span is mapped to
the tokens of the question (tokenized alone, no special tokens) whose ``offset_mapping`` span
overlaps it; its center is the fp32 mean of those tokens' embedding rows.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

STRIPPED_POS = frozenset({"DET", "PRON", "PUNCT"})
NOUN_POS = frozenset({"NOUN", "PROPN"})


class Phrase(NamedTuple):
    """A phrase and its character span ``question[start:end]``."""

    text: str
    start: int
    end: int


def noun_phrases(doc) -> list[Phrase]:
    """Noun phrases of a spaCy ``Doc`` of the question (needs the parser and tagger).

    Returns the phrases in question order, de-duplicated case-insensitively by text.
    """
    candidates: list[Phrase] = []
    covered: set[int] = set()
    for chunk in doc.noun_chunks:
        covered.update(range(chunk.start, chunk.end))
        kept = list(chunk)
        while kept and kept[0].pos_ in STRIPPED_POS:
            kept.pop(0)
        if kept:
            start, end = kept[0].idx, chunk.end_char
            candidates.append(Phrase(doc.text[start:end], start, end))
    for tok in doc:
        if tok.i not in covered and tok.pos_ in NOUN_POS:
            candidates.append(Phrase(tok.text, tok.idx, tok.idx + len(tok.text)))
    candidates.sort(key=lambda p: p.start)
    seen: set[str] = set()
    phrases = []
    for phrase in candidates:
        key = phrase.text.lower()
        if key not in seen:
            seen.add(key)
            phrases.append(phrase)
    return phrases


def locate_phrases(question: str, texts: list[str]) -> list[Phrase]:
    """Character spans of phrase strings in ``question`` (e.g. the stored ``noun_phrases`` column).

    Each text is searched from the end of the previous match onwards (left to right), falling back
    to its first occurrence anywhere when it does not occur after that point.
    Raises ValueError for an empty text or one that does not occur in the question.
    """
    phrases = []
    cursor = 0
    for text in texts:
        if not text:
            raise ValueError(f"empty phrase in {texts!r}")
        start = question.find(text, cursor)
        if start < 0:
            start = question.find(text)
        if start < 0:
            raise ValueError(f"phrase {text!r} does not occur in the question {question!r}")
        phrases.append(Phrase(text, start, start + len(text)))
        cursor = start + len(text)
    return phrases


def _question_offsets(question: str, tokenizer) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets of the question alone, without special tokens."""
    if not question.strip():
        raise ValueError("empty question: noun phrases and centers need question text")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"a fast tokenizer (offset_mapping) is required, got {type(tokenizer).__name__}")
    enc = tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    if not ids:
        raise ValueError(f"the tokenizer produced no tokens for the question {question!r}")
    return ids, offsets


def _check_span(question: str, phrase: Phrase) -> None:
    if not (0 <= phrase.start < phrase.end <= len(question)) or question[phrase.start:phrase.end] != phrase.text:
        raise ValueError(f"phrase {phrase!r} does not match the question {question!r} at its span")


def _ids_in_span(ids: list[int], offsets: list[tuple[int, int]], phrase: Phrase) -> list[int]:
    """Ids of the tokens whose non-empty character span overlaps the phrase span."""
    return [i for i, (s, e) in zip(ids, offsets) if s < e and s < phrase.end and e > phrase.start]


def phrase_token_ids(question: str, phrases: list[Phrase], tokenizer) -> list[list[int]]:
    """LLM token ids of each phrase, from the fast tokenizer's ``offset_mapping`` on the question.

    A token belongs to a phrase when its character span overlaps the phrase span. A phrase can map
    to no token (an empty list) only if the tokenizer drops its characters.
    Raises ValueError for an empty question, a slow tokenizer or a span that does not match.
    """
    ids, offsets = _question_offsets(question, tokenizer)
    for phrase in phrases:
        _check_span(question, phrase)
    return [_ids_in_span(ids, offsets, phrase) for phrase in phrases]


def center_token_groups(question: str, phrases: list[Phrase], tokenizer) -> tuple[list[list[int]], str]:
    """Token-id groups whose embedding means are the question's clustering centers (no model needed).

    Returns ``(groups, center_source)``: one group per phrase that maps to at least one token, and
    ``"nouns"``; when no phrase maps to a token (or ``phrases`` is empty) one group, all question
    tokens, and ``"instruction"``. Raises ValueError for an empty question, a slow tokenizer or a
    phrase span that does not match the question.
    """
    ids, offsets = _question_offsets(question, tokenizer)
    groups = []
    for phrase in phrases:
        _check_span(question, phrase)
        group = _ids_in_span(ids, offsets, phrase)
        if group:
            groups.append(group)
    if not groups:
        return [ids], "instruction"
    return groups, "nouns"


def centers_from_groups(groups: list[list[int]], embedding_weight: torch.Tensor) -> torch.Tensor:
    """Centers (K, d) float32 on the embedding's device: the mean embedding row of each of K groups.

    ``embedding_weight``: (vocab, d) LLM input-embedding matrix, any float dtype and device.
    Raises ValueError for a matrix that is not 2-D or a token id outside the vocabulary.
    """
    if embedding_weight.ndim != 2:
        raise ValueError(f"embedding_weight must be (vocab, d), got shape {tuple(embedding_weight.shape)}")
    vocab = embedding_weight.shape[0]
    top = max(max(g) for g in groups)
    if top >= vocab:
        raise ValueError(f"token id {top} is outside the embedding matrix of {vocab} rows")
    weight = embedding_weight.detach()
    centers = [weight[torch.tensor(g, device=weight.device)].float().mean(dim=0) for g in groups]
    return torch.stack(centers)  # (K, d)


def question_centers(question: str, phrases: list[Phrase], tokenizer,
                     embedding_weight: torch.Tensor) -> tuple[torch.Tensor, str]:
    """Clustering centers of a question: ``center_token_groups`` then ``centers_from_groups``.

    Returns ``(centers (K, d) float32, center_source)``; raises ValueError as those two do.
    """
    groups, source = center_token_groups(question, phrases, tokenizer)
    return centers_from_groups(groups, embedding_weight), source


def pad_centers(centers: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch per-sample centers (K_i, d) into ``(centers (B, K_max, d), mask (B, K_max) bool)``.

    Padded rows are zeros with mask False. All inputs must share d, dtype and device and have K_i >= 1.
    """
    if not centers:
        raise ValueError("pad_centers needs at least one sample")
    first = centers[0]
    for b, c in enumerate(centers):
        if c.ndim != 2 or c.shape[0] < 1:
            raise ValueError(f"centers[{b}] must be (K >= 1, d), got shape {tuple(c.shape)}")
        if c.shape[1] != first.shape[1] or c.dtype != first.dtype or c.device != first.device:
            raise ValueError(f"centers[{b}] is {tuple(c.shape)} {c.dtype} on {c.device}; expected "
                             f"(K, {first.shape[1]}) {first.dtype} on {first.device} like centers[0]")
    k_max = max(c.shape[0] for c in centers)
    out = first.new_zeros(len(centers), k_max, first.shape[1])  # (B, K_max, d)
    mask = torch.zeros(len(centers), k_max, dtype=torch.bool, device=first.device)
    for b, c in enumerate(centers):
        out[b, :c.shape[0]] = c
        mask[b, :c.shape[0]] = True
    return out, mask
