"""Multiple-choice letter extraction, ScienceQA accuracy and MMBench circular accuracy."""
from __future__ import annotations

import random

import polars as pl
import pytest

import reference_evaluators as ref
from pipeline.evaluators.mcq import (
    choice_accuracy, circular_accuracy, extract_choice, extract_choice_expr, option_letters,
)

ABC = ["A", "B", "C"]


@pytest.mark.parametrize("text, expected", [
    ("A", "A"),
    (" C ", "C"),                           # stripped first
    ("B. cat", "B"),                        # "X. " prefix
    ("B.", None),                           # LLaVA needs "X. " and at least 3 characters
    ("E. x", None),                         # E is a LLaVA letter but not offered: wrong, no fallback
    ("F. The answer is A.", "A"),           # F is no LLaVA letter: falls through to "The answer is"
    ("The answer is B.", "B"),
    ("The answer is B", None),              # the pattern wants one character after the letter
    ("The answer is A. The answer is B.", None),  # two matches
    ("The answer is D.", None),             # not offered
    ("a", None),
    ("D", None),
    (None, None),
])
def test_extract_choice_hand_cases(text, expected):
    assert ref.extract_choice(text, ABC) == expected
    assert extract_choice(text, ABC) == expected


def test_extract_choice_accepts_option_texts_or_mapping():
    assert extract_choice("C", ["cat", "dog", "cow"]) == "C"
    assert extract_choice("C", ["cat", "dog"]) is None
    assert extract_choice("B. dog", {"A": "cat", "B": "dog"}) == "B"


def random_prediction(rng: random.Random) -> str | None:
    letter = rng.choice("ABCDEF")
    return rng.choice([
        None, letter, f"{letter}.", f"{letter}. {rng.choice(['cat', 'dog'])}", f" {letter}\n",
        f"The answer is {letter}.", f"The answer is {letter}", f"I think {letter}", letter.lower(),
        f"The answer is {letter}. The answer is {rng.choice('ABCD')}.", f"{letter}) x",
    ])


def test_extract_choice_expr_equals_reference_on_random_rows():
    rng = random.Random(11)
    texts = [random_prediction(rng) for _ in range(2000)]
    options = [option_letters(rng.randint(2, 5)) for _ in texts]
    df = pl.DataFrame({"text": texts, "options": options}, schema={"text": pl.String, "options": pl.List(pl.String)})
    got = df.select(extract_choice_expr(pl.col("text"), pl.col("options")))["text"].to_list()
    assert got == [ref.extract_choice(t, o) for t, o in zip(texts, options)]


def test_choice_accuracy_hand_case():
    df = pl.DataFrame({"prediction": ["A", "B", None, "The answer is C."], "answer": ["A", "C", "A", "C"],
                       "options": [["A", "B"], ["A", "B", "C"], ["A", "B"], ["A", "B", "C"]]})
    assert choice_accuracy(df) == 0.5  # rows 1 and 4 right; row 3 is an error row


def mmbench_rows() -> list[dict]:
    # question 1: three rotations, all right; question 2: two rotations, the second wrong;
    # question 3: one row (no rotation), right. Circular accuracy = 2/3.
    return [
        {"index": 1, "answer": "A", "prediction": "A", "A": "x", "B": "y", "C": "z", "D": None},
        {"index": 1_000_001, "answer": "C", "prediction": "C. z", "A": "y", "B": "z", "C": "x", "D": None},
        {"index": 2_000_001, "answer": "B", "prediction": "The answer is B.", "A": "z", "B": "x", "C": "y", "D": None},
        {"index": 2, "answer": "B", "prediction": "B", "A": "p", "B": "q", "C": "nan", "D": "nan"},
        {"index": 1_000_002, "answer": "A", "prediction": None, "A": "q", "B": "p", "C": "nan", "D": "nan"},
        {"index": 3, "answer": "D", "prediction": "D", "A": "1", "B": "2", "C": "3", "D": "4"},
    ]


def test_circular_accuracy_hand_case():
    rows = mmbench_rows()
    assert ref.circular_accuracy(rows) == pytest.approx(2 / 3)
    assert circular_accuracy(pl.DataFrame(rows)) == pytest.approx(2 / 3)


def test_circular_accuracy_absent_option_is_never_extracted():
    # "C" is "nan" for index 2: the prediction "C" is not an offered letter, so it is wrong
    rows = [{"index": 2, "answer": "B", "prediction": "C", "A": "p", "B": "q", "C": "nan", "D": None}]
    rows.append({**rows[0], "index": 4, "prediction": "B"})
    assert circular_accuracy(pl.DataFrame(rows)) == 0.5


def test_accuracies_equal_reference_on_random_rows():
    rng = random.Random(5)
    rows, sqa = [], []
    for question in range(400):
        n_options = rng.randint(2, 4)
        for rotation in range(rng.choice([1, 4, 4])):
            options = {c: (f"opt{c}{question}" if i < n_options else rng.choice([None, "nan", ""]))
                       for i, c in enumerate("ABCD")}
            rows.append({"index": rotation * 1_000_000 + question, "answer": rng.choice("ABCD"[:n_options]),
                         "prediction": random_prediction(rng), **options})
        sqa.append({"prediction": random_prediction(rng), "answer": rng.choice("ABCD"[:n_options]),
                    "options": option_letters(n_options)})
    assert len(rows) >= 1000
    assert circular_accuracy(pl.DataFrame(rows)) == pytest.approx(ref.circular_accuracy(rows), abs=1e-12)
    assert choice_accuracy(pl.DataFrame(sqa)) == pytest.approx(ref.choice_accuracy(sqa), abs=1e-12)


@pytest.mark.parametrize("rows, message", [
    ([{"index": 1, "answer": "C", "prediction": "A", "A": "x", "B": "y", "C": "nan", "D": None}],
     "not among the row's options in 1 row"),
    ([{"index": 1, "answer": "A", "prediction": "A"}], "no option columns"),
    ([{"index": "1", "answer": "A", "prediction": "A", "A": "x"}], "'index' has dtype"),
])
def test_circular_accuracy_rejects_bad_input(rows, message):
    with pytest.raises(ValueError, match=message):
        circular_accuracy(pl.DataFrame(rows))


def test_option_letters():
    assert option_letters(3) == ["A", "B", "C"]
    with pytest.raises(ValueError, match="1..26"):
        option_letters(0)
