"""nouns: question → noun phrases with spaCy, on CPU actors (``map_batches`` callable class)."""
from __future__ import annotations

import pyarrow as pa

from icctp.nouns import noun_phrases
from pipeline.nlp import load_spacy


class NounStage:
    """Adds ``noun_phrases: list<str>`` (question order, de-duplicated) to each row."""

    def __init__(self, batch_size: int = 64):
        self.nlp = load_spacy()
        self.batch_size = batch_size

    def __call__(self, batch: pa.Table) -> pa.Table:
        questions = [q or "" for q in batch.column("question").to_pylist()]
        docs = self.nlp.pipe(questions, batch_size=self.batch_size)
        phrases = [[p.text for p in noun_phrases(doc)] if q.strip() else [] for q, doc in zip(questions, docs)]
        return batch.append_column("noun_phrases", pa.array(phrases, type=pa.list_(pa.string())))
