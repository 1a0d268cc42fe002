"""MM-Vet: the raw question, open-ended answers graded by a judge (e.g. an LLM) in [0, 1].

Official scorer: the MM-Vet authors' GPT-4 grader (``mm-vet_evaluator``); here it is pluggable, the
score is the mean judge score overall and per capability as that grader reports it.

Some mirrors have no ``image_source`` column: the image is then named by a digest of its bytes.
Without a judge the benchmark is not scored: ``score`` returns ``{}`` and the report says
"not scored" (never zero). ``MMVet(judge=fn)``: ``fn(question, answer, prediction) -> float``
(``pipeline.evaluators.judge.Judge``); scores ``score`` and ``capability/{rec,ocr,...}``.
"""
from __future__ import annotations

import polars as pl

from pipeline.benchmarks.base import IMAGE, STRING, Benchmark, with_targets

TARGETS = pl.Struct({"question": pl.String, "answer": pl.String, "capability": pl.String})


class MMVet(Benchmark):
    name = "mmvet"
    hf_id = "lmms-lab/MMVet"
    split = "test"
    columns = {"question_id": STRING, "question": STRING, "answer": STRING, "image": IMAGE}
    optional_columns = {"image_source": STRING}
    id_column = "question_id"
    image_id_column = "image_source"
    headline = "score"

    def __init__(self, hf_id=None, config=None, split=None, judge=None):
        super().__init__(hf_id, config, split)
        self.judge = judge

    def prompt(self, row):
        return row["question"] or ""

    def targets(self, row):
        return {"question": row["question"], "answer": row["answer"], "capability": row.get("capability")}

    def score(self, df):
        from pipeline.evaluators.judge import mmvet_scores

        if self.judge is None:
            return {}
        return mmvet_scores(with_targets(df, TARGETS), self.judge, capability_col="capability")
