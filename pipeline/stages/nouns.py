"""nouns: question → noun-phrase spans (English spaCy or Chinese jieba), on CPU actors (``map_batches`` callable class)."""
from __future__ import annotations

import pyarrow as pa

from pipeline.nlp import question_phrases
from pipeline.stages.schema import NOUN_SPANS


class NounStage:
    """Adds ``noun_spans: list<struct<text, start, end>>`` (character offsets into the question,
    question order, de-duplicated) and ``noun_lang`` (``"en"`` | ``"zh"``) to each row.

    ``langs``: per benchmark (the ``benchmark`` column) ``"auto"`` (default: decided per question),
    ``"en"`` or ``"zh"`` (one extractor for all its questions).
    """

    def __init__(self, langs: dict[str, str] | None = None, batch_size: int = 64):
        self.langs = dict(langs or {})
        self.batch_size = batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        questions = [q or "" for q in batch.column("question").to_pylist()]
        benchmarks = batch.column("benchmark").to_pylist()
        spans: list = [None] * len(questions)
        langs: list = [None] * len(questions)
        for setting in sorted({self.langs.get(b, "auto") for b in benchmarks}):
            rows = [i for i, b in enumerate(benchmarks) if self.langs.get(b, "auto") == setting]
            found = question_phrases([questions[i] for i in rows], setting, self.batch_size)
            for i, (phrases, lang) in zip(rows, found):
                spans[i] = [p._asdict() for p in phrases]
                langs[i] = lang
        return (batch.append_column("noun_spans", pa.array(spans, type=NOUN_SPANS))
                .append_column("noun_lang", pa.array(langs, type=pa.string())))
