"""POPE yes/no parsing and metrics: LLaVA-1.5 rule, hand-computed metrics, polars == reference."""
from __future__ import annotations

import random

import polars as pl
import pytest
import reference_evaluators as ref

from pipeline.evaluators.pope import parse_yes_no, parse_yes_no_expr, pope_metrics


@pytest.mark.parametrize("text, expected", [
    ("No, there is not.", "no"),
    ("Yes. No", "yes"),              # only the text before the first '.' counts
    ("no.", "no"),
    ("There is no dog", "no"),
    ("no,", "no"),                   # ',' is deleted before splitting
    ("NO", "yes"),                   # only "No", "not", "no" count
    ("Not", "yes"),
    ("nope", "yes"),
    ("", "yes"),
    ("a\nno", "yes"),                # split on ' ' only: the word is "a\nno"
])
def test_parse_yes_no_hand_cases(text, expected):
    assert ref.parse_yes_no(text) == expected
    assert parse_yes_no(text) == expected


def test_pope_metrics_hand_case():
    df = pl.DataFrame({
        "prediction": ["Yes", "No", None, "yes", "no", "Yes"],
        "answer": ["yes", "no", "yes", "no", "yes", "Yes"],
        "category": ["adversarial"] * 3 + ["random"] * 3,
    })
    m = pope_metrics(df)
    # adversarial: TP, TN, error on a positive (FN) -> acc 2/3, P 1/1, R 1/2, F1 2/3, yes 1/3
    assert m["adversarial/accuracy"] == pytest.approx(2 / 3)
    assert m["adversarial/precision"] == 1.0
    assert m["adversarial/recall"] == 0.5
    assert m["adversarial/f1"] == pytest.approx(2 / 3)
    assert m["adversarial/yes_ratio"] == pytest.approx(1 / 3)
    # random: FP, FN, TP -> acc 1/3, P 1/2, R 1/2, F1 1/2, yes 2/3
    assert m["random/accuracy"] == pytest.approx(1 / 3)
    assert (m["random/precision"], m["random/recall"], m["random/f1"]) == (0.5, 0.5, 0.5)
    assert m["random/yes_ratio"] == pytest.approx(2 / 3)
    # pooled: TP 2, FP 1, FN 2, TN 1 -> P 2/3, R 1/2, F1 4/7
    assert m["pooled/f1"] == pytest.approx(4 / 7)
    assert m["pooled/accuracy"] == 0.5
    assert m["mean_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert len(m) == 3 * 5 + 1


def test_pope_all_no_gives_zero_precision_not_an_error():
    df = pl.DataFrame({"prediction": ["no", "no"], "answer": ["yes", "no"], "category": ["popular"] * 2})
    m = pope_metrics(df)
    assert (m["popular/precision"], m["popular/recall"], m["popular/f1"]) == (0.0, 0.0, 0.0)
    assert m["popular/accuracy"] == 0.5 and m["popular/yes_ratio"] == 0.0


def test_pope_equals_reference_on_random_rows():
    rng = random.Random(7)
    texts = ["Yes", "No", "yes.", "No, there is not.", "There is no cat.", "I think so", "Not sure", "no", "",
             "Yes, a dog. No cat", "nope", "NO", "there is not a dog"]
    rows = [{
        "prediction": None if rng.random() < 0.05 else rng.choice(texts),
        "answer": rng.choice(["yes", "no"]),
        "category": rng.choice(["adversarial", "popular", "random"]),
    } for _ in range(1500)]
    df = pl.DataFrame(rows, schema={"prediction": pl.String, "answer": pl.String, "category": pl.String})
    assert df.select(parse_yes_no_expr("prediction"))["prediction"].to_list() == [
        None if r["prediction"] is None else ref.parse_yes_no(r["prediction"]) for r in rows
    ]
    got, expected = pope_metrics(df), ref.pope_metrics(rows)
    assert got.keys() == expected.keys()
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("df, message", [
    (pl.DataFrame({"prediction": ["yes"], "answer": ["yes"]}), "missing column 'category'"),
    (pl.DataFrame({"prediction": ["yes"], "answer": ["maybe"], "category": ["random"]}), "must be yes/no"),
    (pl.DataFrame({"prediction": ["yes"], "answer": [None], "category": ["random"]},
                  schema={"prediction": pl.String, "answer": pl.String, "category": pl.String}), "null value"),
    (pl.DataFrame({"prediction": ["yes"], "answer": ["yes"], "category": ["pooled"]}), "reserved"),
    (pl.DataFrame({"prediction": [], "answer": [], "category": []},
                  schema={"prediction": pl.String, "answer": pl.String, "category": pl.String}), "no rows"),
])
def test_pope_rejects_bad_input(df, message):
    with pytest.raises(ValueError, match=message):
        pope_metrics(df)
