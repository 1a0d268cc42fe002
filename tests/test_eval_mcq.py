"""ScienceQA-IMG: LLaVA's letter extraction and accuracy (MMBench: test_eval_mmbench.py)."""
from __future__ import annotations

import random

import polars as pl
import pytest
import reference_evaluators as ref

from pipeline.evaluators.mcq import choice_accuracy, extract_choice, extract_choice_expr, option_letters

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


def test_choice_accuracy_equals_reference_on_random_rows():
    rng = random.Random(5)
    sqa = []
    for _ in range(1000):
        n_options = rng.randint(2, 4)
        sqa.append({"prediction": random_prediction(rng), "answer": rng.choice("ABCD"[:n_options]),
                    "options": option_letters(n_options)})
    assert choice_accuracy(pl.DataFrame(sqa)) == pytest.approx(ref.choice_accuracy(sqa), abs=1e-12)


def test_choice_accuracy_rejects_an_answer_that_is_not_offered():
    df = pl.DataFrame({"prediction": ["A"], "answer": ["C"], "options": [["A", "B"]]})
    with pytest.raises(ValueError, match="not among the row's options in 1 row"):
        choice_accuracy(df)


def test_option_letters():
    assert option_letters(3) == ["A", "B", "C"]
    with pytest.raises(ValueError, match="1..26"):
        option_letters(0)
