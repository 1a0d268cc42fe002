"""MM-Vet: the raw question, open-ended answers graded by a judge (e.g. an LLM) in [0, 1].

Without a judge the benchmark is not scored: ``score`` returns ``{}`` and the report says
"not scored" (never zero). ``MMVet(judge=fn)``: ``fn(question, answer, prediction) -> float``.
"""
from __future__ import annotations

from collections.abc import Callable

import polars as pl

from pipeline.benchmarks.base import IMAGE, STRING, Benchmark, with_targets

Judge = Callable[[str, str, str], float]
TARGETS = pl.Struct({"question": pl.String, "answer": pl.String})


class MMVet(Benchmark):
    name = "mmvet"
    hf_id = "lmms-lab/MMVet"
    split = "test"
    columns = {"question_id": STRING, "question": STRING, "answer": STRING, "image": IMAGE, "image_source": STRING}
    id_column = "question_id"
    image_id_column = "image_source"
    headline = "score"

    def __init__(self, hf_id=None, config=None, split=None, judge: Judge | None = None):
        super().__init__(hf_id, config, split)
        self.judge = judge

    def prompt(self, row):
        return row["question"] or ""

    def targets(self, row):
        return {"question": row["question"], "answer": row["answer"], "capability": row.get("capability")}

    def score(self, df):
        if self.judge is None:
            return {}
        rows = with_targets(df, TARGETS).iter_rows(named=True)
        grades = [0.0 if r["prediction"] is None else self.judge(r["question"], r["answer"], r["prediction"])
                  for r in rows]
        bad = [g for g in grades if not 0.0 <= g <= 1.0]
        if bad:
            raise ValueError(f"benchmark 'mmvet': judge returned grades outside [0, 1]: {bad[:5]}")
        return {"score": sum(grades) / len(grades)}
