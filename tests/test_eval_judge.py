"""MM-Vet judge interface: not scored without a judge, judge scores averaged, errors scored 0."""
from __future__ import annotations

import polars as pl
import pytest

from pipeline.evaluators.judge import Judge, mmvet_scores

DF = pl.DataFrame({"question": ["q1", "q2", "q3"], "answer": ["a", "b", "c"], "prediction": ["a", None, "x"],
                   "capability": ["rec,ocr", "ocr", "rec"]})


class ExactJudge:
    def __init__(self):
        self.calls = []

    def __call__(self, question: str, answer: str, prediction: str) -> float:
        self.calls.append(question)
        return float(answer == prediction)


def test_no_judge_means_not_scored():
    assert mmvet_scores(DF) == {}


def test_judge_scores_and_capabilities():
    judge = ExactJudge()
    assert isinstance(judge, Judge)
    out = mmvet_scores(DF, judge, capability_col="capability")
    # scores 1, 0 (error row), 0 -> 1/3; ocr rows 1 and 2 -> 1/2; rec rows 1 and 3 -> 1/2
    assert out == {"score": pytest.approx(1 / 3), "capability/ocr": 0.5, "capability/rec": 0.5}
    assert judge.calls == ["q1", "q3"]  # the error row is not judged


def test_judge_score_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="judge returned 2.0 for row 0"):
        mmvet_scores(DF, lambda q, a, p: 2.0)
