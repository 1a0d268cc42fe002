"""Question noun phrases -> LLM token ids -> clustering centers (paper Eq. 8).

Pure functions: the caller passes a parsed spaCy ``Doc`` (English) or a Chinese part-of-speech
tagger (text -> (word, tag) pairs), a fast tokenizer and the LLM input-embedding matrix; nothing
is loaded here.

English phrases are the spaCy noun chunks of the question with leading determiners, pronouns and
punctuation removed ("What color" -> "color", "the wooden bench" -> "wooden bench"; a chunk left
empty, e.g. "it", is dropped), plus NOUN/PROPN tokens outside every chunk. Chinese phrases are
maximal runs of adjacent words tagged as nouns (jieba / ICTCLAS tags: ``n*`` nouns and proper nouns,
``vn`` verbal nouns such as 运动, ``eng`` Latin words inside a Chinese question such as iPhone):
"销售数据" (vn + n) is one phrase, "国家的国旗" two. Either way: question order, de-duplicated
case-insensitively (first occurrence kept). Each phrase's character span is mapped to the tokens of
the question (tokenized alone, no special tokens) whose ``offset_mapping`` span overlaps it; its
center is the fp32 mean of those tokens' embedding rows.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch

STRIPPED_POS = frozenset({"DET", "PRON", "PUNCT"})
NOUN_POS = frozenset({"NOUN", "PROPN"})
ZH_NOUN_TAGS = frozenset({"vn", "eng"})  # besides every tag starting with "n"
# CJK ideographs: unified, extension A, compatibility (the ranges jieba segments as Chinese and more)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_HALFWIDTH = {0x3000: 0x20, **{c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}}  # full-width ASCII -> ASCII


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
    return _dedupe(candidates)


def question_lang(question: str) -> str:
    """``"zh"`` when CJK ideographs are at least half of the question's letters, else ``"en"``.

    Letters are characters with ``str.isalpha()`` (digits, spaces and punctuation, full-width or
    not, do not count); a question without letters is ``"en"``.
    """
    han = len(_HAN.findall(question))
    letters = sum(ch.isalpha() for ch in question)
    return "zh" if han and 2 * han >= letters else "en"


def zh_noun_phrases(question: str, tag: Callable[[str], Iterable[tuple[str, str]]]) -> list[Phrase]:
    """Noun phrases of a Chinese question, in question order, spans into ``question``.

    ``tag``: a part-of-speech tagger, text -> its (word, tag) pairs in order (e.g. jieba's
    ``POSTokenizer.cut``). It sees the question with full-width ASCII forms (Ａ, ？, the ideographic
    space) mapped to their half-width letters (one character each, so offsets are unchanged): "ＡＢＣ"
    is tagged as the Latin word it is. Words are located left to right, so characters the tagger
    skips are allowed. Adjacent noun words form one phrase. Raises ValueError for a word that does
    not occur in the rest of the question.
    """
    text = question.translate(_HALFWIDTH)
    candidates: list[Phrase] = []
    cursor = 0
    run_start = run_end = -1
    for word, pos in tag(text):
        if not word:
            continue
        start = text.find(word, cursor)
        if start < 0:
            raise ValueError(f"tagged word {word!r} does not occur in {text!r} after offset {cursor}")
        cursor = start + len(word)
        if not (pos.startswith("n") or pos in ZH_NOUN_TAGS) or not word.strip():
            continue
        if start != run_end:
            run_start = start
            candidates.append(None)
        run_end = cursor
        candidates[-1] = Phrase(question[run_start:run_end], run_start, run_end)
    return _dedupe(candidates)


def _dedupe(candidates: list[Phrase]) -> list[Phrase]:
    """Phrases in question order, the first of each case-insensitive text kept."""
    seen: set[str] = set()
    phrases = []
    for phrase in sorted(candidates, key=lambda p: p.start):
        key = phrase.text.lower()
        if key not in seen:
            seen.add(key)
            phrases.append(phrase)
    return phrases


def as_phrases(spans: Iterable) -> list[Phrase]:
    """``Phrase``s from stored spans: dicts ``{text, start, end}`` (an Arrow struct row) or tuples."""
    return [Phrase(s["text"], s["start"], s["end"]) if isinstance(s, dict) else Phrase(*s) for s in spans]


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
