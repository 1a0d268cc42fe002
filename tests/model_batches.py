"""Prepared batches of fixture rows for model-level tests: real images, prompts of several lengths."""
from __future__ import annotations

import pyarrow.parquet as pq

from pipeline.model.inputs import PreparedBatch
from pipeline.nlp import question_phrases

SUFFIXES = ("", "\nAnswer the question using a single word or phrase.",
            "\nLook at the whole picture carefully, think about every object in it, then answer in one sentence.")


def fixture_batch(vlm, fixtures_root, n: int, with_centers: bool = True) -> PreparedBatch:
    """``n`` VQAv2 fixture rows (images shared by neighbours) with prompts of three lengths, prepared for ``vlm``."""
    rows = pq.read_table(fixtures_root / "data" / "vqav2.parquet", columns=["question", "image"]).slice(0, n)
    questions = rows.column("question").to_pylist()
    phrases = question_phrases(questions, "en")
    samples = [{"image": image["bytes"], "question": q, "prompt": q + SUFFIXES[i % len(SUFFIXES)],
                "noun_spans": [p._asdict() for p in found]}
               for i, (q, image, (found, _)) in enumerate(zip(questions, rows.column("image").to_pylist(), phrases))]
    return vlm.preprocessor.prepare(samples, with_centers=with_centers)
