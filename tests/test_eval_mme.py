"""MME (calculation.py of the MME authors) parsing and acc + acc+ scores: hand-computed cases, polars == reference."""
from __future__ import annotations

import json
import random

import polars as pl
import pytest
import reference_evaluators as ref

from pipeline.evaluators.mme import COGNITION, PERCEPTION, mme_scores, parse_mme, parse_mme_expr
from pipeline.stages.score import score_predictions


@pytest.mark.parametrize("text, expected", [
    ("Yes", "yes"), ("no.", "no"), (" nO. ", "no"),    # "no" within the first 4 characters
    ("y", "other"), ("N", "other"), ("Y.", "other"),    # no single-letter answers
    ("Yes, it is", "yes"),
    ("not sure", "no"),
    ("Nope", "no"),
    ("The answer is no", "other"),                       # "no" only after the first 4 characters
    ("   yes", "other"),                                 # never stripped: the prefix is "   y"
    ("yesno", "yes"),                                    # "yes" is looked for first
    ("noyes", "no"),                                     # "yes" not within the first 4 characters
    ("", "other"),
])
def test_parse_mme_hand_cases(text, expected):
    assert ref.parse_mme(text) == expected
    assert parse_mme(text) == expected


def test_mme_scores_hand_case():
    df = pl.DataFrame({
        "question_id": ["a.png", "a.png", "b.png", "b.png", "c.png", "c.png"],
        "category": ["count"] * 4 + ["code_reasoning"] * 2,
        "answer": ["Yes", "No", "Yes", "No", "Yes", "No"],
        "prediction": ["yes", "No.", "yes", "yes", None, "no"],
    })
    # count: 3 of 4 questions right (75), 1 of 2 images fully right (50) -> 125
    # code_reasoning: 1 of 2 right (50), error row makes the image wrong (0) -> 50
    assert mme_scores(df) == {"count": 125.0, "code_reasoning": 50.0, "perception": 125.0, "cognition": 50.0}


def test_mme_group_sums_only_over_present_groups():
    df = pl.DataFrame({"question_id": ["a", "a"], "category": ["OCR", "OCR"], "answer": ["Yes", "No"],
                       "prediction": ["Yes", "No"]})
    assert mme_scores(df) == {"OCR": 200.0, "perception": 200.0}


def test_mme_scores_follow_the_tool_parse():
    df = pl.DataFrame({
        "question_id": ["a.png", "a.png", "b.png", "b.png"],
        "category": ["OCR"] * 4,
        "answer": ["Yes", "No", "Yes", "No"],
        "prediction": ["Y.", "Nope", "yes, it is", "n"],
    })
    # right: "Nope" and "yes, it is" (2 of 4: 50); no image has both right (0)
    assert mme_scores(df) == {"OCR": 50.0, "perception": 50.0}


def test_score_predictions_of_mme_uses_the_tool_parse():
    rows = [("Y.", "Yes"), ("Nope", "No"), ("yes, it is", "Yes"), ("no", "No"), (None, "Yes"), ("Yes", "No")]
    frame = pl.DataFrame({
        "benchmark": "mme", "variant": "full", "method": "full", "budget": pl.Series([576] * 6, dtype=pl.Int32),
        "sample_id": [str(i) for i in range(6)], "prediction": [p for p, _ in rows],
        "error": [None, None, None, None, "ImageError: bad", None],
        "targets": [json.dumps({"question_id": f"{i // 2}.png", "category": "count", "answer": a})
                    for i, (_, a) in enumerate(rows)],
    }, schema_overrides={"prediction": pl.String, "error": pl.String})
    metrics = dict(score_predictions(frame).select("metric", "value").iter_rows())
    # right: rows 1, 2, 3 (3 of 6: 50); image 1 (rows 2, 3) fully right (1 of 3: 33.3)
    assert metrics == {"count": pytest.approx(50 + 100 / 3), "perception": pytest.approx(50 + 100 / 3)}


def test_mme_equals_reference_on_random_rows():
    rng = random.Random(3)
    texts = ["Yes", "No", "yes.", "no", "y", "n", "Y.", "Yes, there is.", "No it is not", "maybe", "", "Nope",
             "The answer is yes", " Yes", "NO!", "not sure"]
    rows = []
    for image in range(600):
        category = rng.choice(PERCEPTION + COGNITION)
        for answer in ("Yes", "No"):
            rows.append({"question_id": f"{category}/{image}.png", "category": category, "answer": answer,
                         "prediction": None if rng.random() < 0.05 else rng.choice(texts)})
    df = pl.DataFrame(rows)
    assert df.select(parse_mme_expr("prediction"))["prediction"].to_list() == [
        None if r["prediction"] is None else ref.parse_mme(r["prediction"]) for r in rows
    ]
    got, expected = mme_scores(df), ref.mme_scores(rows)
    assert got.keys() == expected.keys() and set(got) == set(PERCEPTION + COGNITION) | {"perception", "cognition"}
    assert got == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("df, message", [
    (pl.DataFrame({"question_id": ["a"], "category": ["count"], "answer": ["Yes"]}), "missing column 'prediction'"),
    (pl.DataFrame({"question_id": ["a"], "category": ["counting"], "answer": ["Yes"], "prediction": ["yes"]}),
     "unknown MME categories \\['counting'\\]"),
    (pl.DataFrame({"question_id": ["a"], "category": ["count"], "answer": ["Maybe"], "prediction": ["yes"]}),
     "must be yes/no"),
])
def test_mme_rejects_bad_input(df, message):
    with pytest.raises(ValueError, match=message):
        mme_scores(df)
