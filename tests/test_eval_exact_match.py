"""GQA exact match: hand cases and polars == reference."""
from __future__ import annotations

import random

import polars as pl
import pytest
import reference_evaluators as ref

from pipeline.evaluators.exact_match import exact_match_frame, normalize_exact


@pytest.mark.parametrize("text, expected", [
    ("Yes.", "yes"), ("  Left..  ", "left"), ("St. Louis.", "st. louis"), ("yes .", "yes "), ("", ""),
])
def test_normalize_exact_hand_cases(text, expected):
    assert ref.normalize_exact(text) == expected
    assert normalize_exact(text) == expected


def test_exact_match_hand_case():
    df = pl.DataFrame({"prediction": ["Yes.", None, "no", "Table"], "answer": ["yes", "yes", "yes", "table"]})
    assert exact_match_frame(df).to_list() == [1.0, 0.0, 0.0, 1.0]


def test_exact_match_equals_reference_on_random_rows():
    rng = random.Random(2)
    words = ["yes", "no", "left", "right", "table", "red", "st. louis", "man"]
    styles = [str, str.upper, str.capitalize, lambda w: w + ".", lambda w: f" {w}..\n", lambda w: w + " ."]
    rows = [{"prediction": None if rng.random() < 0.05 else rng.choice(styles)(rng.choice(words)),
             "answer": rng.choice(words)} for _ in range(1500)]
    got = exact_match_frame(pl.DataFrame(rows, schema={"prediction": pl.String, "answer": pl.String}))
    assert got.to_list() == [ref.exact_match(r["prediction"], r["answer"]) for r in rows]


def test_exact_match_rejects_null_answer():
    df = pl.DataFrame({"prediction": ["a"], "answer": [None]}, schema={"prediction": pl.String, "answer": pl.String})
    with pytest.raises(ValueError, match="'answer' has 1 null"):
        exact_match_frame(df)
