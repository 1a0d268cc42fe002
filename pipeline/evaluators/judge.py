"""MM-Vet: scoring by a pluggable judge; without a judge the benchmark is *not scored*.

MM-Vet answers are open-ended and graded by an LLM judge (GPT-4 in the original) with a score in
[0, 1] per sample. A judge here is any callable ``(question, answer, prediction) -> float``.
``mmvet_scores(df, judge=None)`` returns ``{}`` — never zeros — so reports say "not scored".
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import polars as pl

from pipeline.evaluators.frame import as_string, require_columns, require_no_nulls, require_rows


@runtime_checkable
class Judge(Protocol):
    """Scores one open-ended prediction against the reference answer, in [0, 1]."""

    def __call__(self, question: str, answer: str, prediction: str) -> float: ...


def mmvet_scores(
    df: pl.DataFrame,
    judge: Judge | None = None,
    pred_col: str = "prediction",
    question_col: str = "question",
    answer_col: str = "answer",
    capability_col: str | None = None,
) -> dict[str, float]:
    """``{}`` without a judge; else ``score`` = mean judge score in [0, 1] over all rows and, if
    ``capability_col`` is given (comma-separated string or List(String), e.g. "rec,ocr"),
    ``capability/{name}`` = mean over the rows that need that capability.

    The judge is called once per row with a prediction; a null prediction (error row) scores 0
    without calling it. A judge score outside [0, 1] raises ``ValueError``.
    """
    if judge is None:
        return {}
    who = "mmvet_scores"
    columns = {pred_col: (pl.String, pl.Null), question_col: (pl.String,), answer_col: (pl.String,)}
    if capability_col is not None:
        columns[capability_col] = (pl.String, pl.List)
    require_columns(df, columns, who)
    for col in (question_col, answer_col):
        require_no_nulls(df, col, who)
    require_rows(df, who)
    scores = []
    for i, (question, answer, prediction) in enumerate(
        zip(df[question_col], df[answer_col], as_string(df, pred_col))
    ):
        score = 0.0 if prediction is None else float(judge(question, answer, prediction))
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"{who}: judge returned {score} for row {i}; scores must lie in [0, 1]")
        scores.append(score)
    out = {"score": sum(scores) / len(scores)}
    if capability_col is not None:
        caps = df[capability_col]
        if caps.dtype == pl.String:
            caps = caps.str.split(",").list.eval(pl.element().str.strip_chars())
        per_capability = (
            pl.DataFrame({"capability": caps, "score": scores})
            .explode("capability").drop_nulls("capability")
            .group_by("capability").agg(pl.col("score").mean()).sort("capability")
        )
        out.update({f"capability/{c}": s for c, s in per_capability.iter_rows()})
    return out
