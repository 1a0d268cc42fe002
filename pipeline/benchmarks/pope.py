"""POPE (adversarial / popular / random): short-answer prompt; accuracy, precision, recall, F1
and yes-ratio per category, headline the mean F1 over categories (never pooled).

Official scorer it equals: LLaVA-1.5's ``llava/eval/eval_pope.py`` (= POPE's ``evaluate.py``), run per
category (``pipeline/evaluators/pope.py``)."""
from __future__ import annotations

import polars as pl

from pipeline.benchmarks.base import IMAGE, SHORT_ANSWER, STRING, Benchmark, with_targets

TARGETS = pl.Struct({"answer": pl.String, "category": pl.String})


class POPE(Benchmark):
    name = "pope"
    hf_id = "lmms-lab/POPE"
    split = "test"
    columns = {"id": STRING, "question": STRING, "answer": STRING, "image": IMAGE, "image_source": STRING,
               "category": STRING}
    id_column = "id"
    image_id_column = "image_source"
    headline = "mean_f1"

    def prompt(self, row):
        return f"{row['question'] or ''}{SHORT_ANSWER}"

    def targets(self, row):
        return {"question_id": row.get("question_id"), "answer": row["answer"], "category": row["category"]}

    def score(self, df):
        from pipeline.evaluators.pope import pope_metrics

        return pope_metrics(with_targets(df, TARGETS))
