"""Question words with part of speech and noun-phrase membership, and piece attributions summed into them.

The extractors are the nouns stage's (``pipeline.nlp``): spaCy's ``en_core_web_sm`` for English
(universal POS ``pos_``, fine tag ``tag_``), jieba's dictionary tagger for Chinese (ICTCLAS tags,
mapped to universal POS by ``ZH_UPOS``). A word lies in a noun phrase when its span overlaps one of
the question's ``noun_spans`` (the nouns stage's phrases: "the wooden bench" -> "wooden bench", so
"wooden" is in one and "the" is not). Whitespace tokens are not words; punctuation is a word with
POS ``PUNCT`` (the statistics leave it out).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

from icctp.nouns import _HALFWIDTH, as_phrases
from pipeline.nlp import load_jieba, load_spacy

# jieba / ICTCLAS tag (first letter, or the whole tag) -> universal POS
ZH_UPOS = {"nr": "PROPN", "ns": "PROPN", "nt": "PROPN", "nz": "PROPN", "vn": "NOUN", "eng": "X",
           "n": "NOUN", "t": "NOUN", "s": "NOUN", "f": "NOUN", "v": "VERB", "a": "ADJ", "b": "ADJ", "z": "ADJ",
           "d": "ADV", "p": "ADP", "c": "CCONJ", "u": "PART", "y": "PART", "e": "INTJ", "o": "INTJ", "r": "PRON",
           "m": "NUM", "q": "NOUN", "x": "PUNCT", "w": "PUNCT"}
NOUN_UPOS = frozenset({"NOUN", "PROPN"})


class Word(NamedTuple):
    """A question word: ``question[start:end]``, universal POS, fine tag, inside a noun phrase."""

    text: str
    start: int
    end: int
    pos: str
    tag: str
    in_np: bool


def zh_upos(tag: str) -> str:
    """Universal POS of a jieba tag (``X`` when unknown)."""
    return ZH_UPOS.get(tag) or ZH_UPOS.get(tag[:1], "X")


def _spans_overlap(start: int, end: int, spans) -> bool:
    return any(s.start < end and s.end > start for s in spans)


def _zh_tokens(question: str) -> list[tuple[str, int, int, str]]:
    """jieba (word, start, end, tag), located left to right in the question."""
    text = question.translate(_HALFWIDTH)
    out, cursor = [], 0
    for word, tag in functools.partial(load_jieba().cut, HMM=False)(text):
        start = text.find(word, cursor)
        if not word.strip() or start < 0:
            continue
        cursor = start + len(word)
        out.append((question[start:cursor], start, cursor, tag))
    return out


def question_words(questions: list[str], langs: list[str], noun_spans: list) -> list[list[Word]]:
    """Words of each question; ``langs``: the nouns stage's ``noun_lang`` ("en" | "zh") per question,
    ``noun_spans``: its phrases (dicts ``{text, start, end}``)."""
    out: list[list[Word]] = [[] for _ in questions]
    english = [i for i, lang in enumerate(langs) if lang != "zh" and questions[i] and questions[i].strip()]
    if english:
        for i, doc in zip(english, load_spacy().pipe(questions[i] for i in english)):
            spans = as_phrases(noun_spans[i] or [])
            out[i] = [Word(t.text, t.idx, t.idx + len(t.text), t.pos_, t.tag_,
                           _spans_overlap(t.idx, t.idx + len(t.text), spans))
                      for t in doc if not t.is_space]
    for i, lang in enumerate(langs):
        if lang == "zh" and questions[i] and questions[i].strip():
            spans = as_phrases(noun_spans[i] or [])
            out[i] = [Word(w, s, e, zh_upos(tag), tag, _spans_overlap(s, e, spans)) for w, s, e, tag in _zh_tokens(questions[i])]
    return out


def word_attribution(words: list[Word], pieces: list[tuple[int, int]], values: list[float]) -> list[float]:
    """Sum piece values into words: each piece (character span) counts once, for the word it overlaps
    most (the first on a tie); a piece that overlaps no word (whitespace) is dropped."""
    totals = [0.0] * len(words)
    for (start, end), value in zip(pieces, values, strict=True):
        overlaps = [min(end, w.end) - max(start, w.start) for w in words]
        if overlaps and max(overlaps) > 0:
            totals[overlaps.index(max(overlaps))] += float(value)
    return totals
