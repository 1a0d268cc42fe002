"""ScienceQA-IMG test: optional context line, lettered choices, the MCQ suffix; accuracy of the
extracted letter (exact letter, an ``X.`` prefix, or ``The answer is X.``), as LLaVA-1.5's
``llava/eval/eval_science_qa.py`` scores it (``pipeline/evaluators/mcq.py``).

The dataset has no id column: a sample is named by its row position in the split, and its
image by a digest of the image bytes.
"""
from __future__ import annotations

import polars as pl

from pipeline.benchmarks.base import (
    IMAGE,
    INT,
    LETTERS,
    MCQ_ANSWER,
    STRING,
    STRINGS,
    Benchmark,
    options_block,
    present,
    with_targets,
)

TARGETS = pl.Struct({"answer": pl.String, "options": pl.List(pl.String)})


class ScienceQAImg(Benchmark):
    name = "sqa_img"
    hf_id = "lmms-lab/ScienceQA"
    config = "ScienceQA-IMG"
    split = "test"
    columns = {"question": STRING, "choices": STRINGS, "answer": INT, "hint": STRING, "image": IMAGE}
    headline = "accuracy"

    def prompt(self, row):
        context = f"Context: {row['hint']}\n" if present(row["hint"]) else ""
        choices = list(zip(LETTERS, row["choices"] or []))
        return f"{context}{row['question'] or ''}{options_block(choices)}{MCQ_ANSWER}"

    def targets(self, row):
        choices = row["choices"] or []
        answer = row["answer"]
        valid = isinstance(answer, int) and 0 <= answer < len(choices)
        return {"answer": LETTERS[answer] if valid else None,
                "answer_index": answer, "options": list(LETTERS[: len(choices)]), "choices": choices}

    def score(self, df):
        from pipeline.evaluators.mcq import choice_accuracy

        return {"accuracy": choice_accuracy(with_targets(df, TARGETS))}
