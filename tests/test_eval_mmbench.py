"""MMBench / MMBench-CN: VLMEvalKit's can_infer and circular evaluation (exact matching), each quirk
by hand through the public functions and through ``score_predictions``; polars == reference."""
from __future__ import annotations

import json
import math
import random

import polars as pl
import pytest
import reference_evaluators as ref
from mmbench_answers import options, prediction

from pipeline.benchmarks import get_benchmark
from pipeline.evaluators.mmbench import can_infer, can_infer_expr, circular_accuracy, offered_expr, offered_options
from pipeline.stages.score import score_predictions

EN = {"A": "green", "B": "red", "C": "a cat"}
CN = {"A": "猫", "B": "狗", "C": "红色", "D": "两个"}
LONG = {"A": "the red one on the left side", "B": "the blue one"}

CASES = [
    # letters in the usual wrappings
    ("B", EN, "B"), ("B.", EN, "B"), ("(A)", EN, "A"), ("[C]", EN, "C"), ("**B**", EN, "B"),
    ("Answer: A", EN, "A"), ("The answer is C", EN, "C"), ("B. red", EN, "B"), ("C\n", EN, "C"),
    ("the answer is b", EN, "B"),                       # the "answer is" pattern ignores case
    ("The correct answer is **B**. Because", EN, "B"),
    ("The answer is Apple", EN, "A"),                   # ... and has no word boundary after the letter
    ("The answer is D", EN, None),                      # D is not offered
    # one letter token, but too early: not among the last four tokens
    ("B is right since it shows the color", EN, None),
    ("It is B for sure", EN, "B"),
    # two letters: a miss (unless "answer is X" names one)
    ("A or B", EN, None), ("The answer is A, not B", EN, "A"),
    # option text (lower-cased substring, exactly one option, answer at most twice the texts' length)
    ("GREEN", EN, "A"), ("It is red", EN, "B"), ("green and red", EN, None),
    ("a cat, and it is certainly sitting there", EN, None),  # 40 characters > 2 * 12
    ("一只猫", CN, "A"), ("A、猫", CN, "A"),
    # Chinese punctuation is not a separator: "A、" and "选项A：" are single tokens
    ("A、", CN, None), ("选项A：", CN, None), ("选项A: 猫", CN, "A"),
    # refusals and "Z"
    ("Cannot determine the answer", EN, "Z"), ("Z", EN, "Z"),
    ("Failed to obtain answer via API: A", LONG, None),  # the letter is not read ...
    ("Failed to obtain answer via API: the blue one", LONG, "B"),  # ... option texts still are
    ("", EN, None), (None, EN, None),
]


@pytest.mark.parametrize("text, opts, expected", CASES)
def test_can_infer_by_hand(text, opts, expected):
    assert can_infer(text, opts) == expected
    assert ref.mmb_can_infer(text, opts) == expected


def test_can_infer_equals_reference_on_random_realistic_predictions():
    rng = random.Random(2)
    rows = []
    for _ in range(3000):
        opts = options(rng)
        rows.append({"prediction": prediction(rng, opts), **{k: (None if isinstance(v, float) else v)
                                                             for k, v in opts.items()}})
    df = pl.DataFrame(rows, schema={"prediction": pl.String, **{c: pl.String for c in "ABCD"}})
    got = df.select(can_infer_expr(pl.col("prediction"), offered_expr("ABCD")))["prediction"].to_list()
    assert got == [ref.mmb_can_infer(r["prediction"], ref.offered(r)) for r in rows]


@pytest.mark.parametrize("row, letters", [
    ({"A": "x", "B": "y", "C": None, "D": "w"}, "AB"),      # stops at the first absent option
    ({"A": "x", "B": "None", "C": "z"}, "A"),               # "None" (any case) is absent
    ({"A": "x", "B": " nan ", "C": "z"}, "A"),
    ({"A": "x", "B": "", "C": "z"}, "A"),
    ({"A": "x", "B": math.nan}, "A"),
    ({"A": "0", "B": "nothing", "C": "Nonexistent"}, "ABC"),
])
def test_options_rule_is_the_same_in_prompt_and_scorer(row, letters):
    assert [k for k, _ in offered_options(row)] == list(letters)
    cols = {c: [None if isinstance(row.get(c), float) else row.get(c)] for c in "ABCD"}
    offered = pl.DataFrame(cols, schema={c: pl.String for c in "ABCD"}).select(offered_expr("ABCD")).row(0)
    assert [c for c, v in zip("ABCD", offered) if v is not None] == list(letters)
    prompt = get_benchmark("mmbench").prompt({"question": "Q?", "hint": None, **row})
    assert prompt.count("\n") - 1 == len(letters)  # one line per offered option, then the suffix


def rows_of(spec):
    """spec: (index, answer, prediction, n_options)."""
    return [{"index": i, "answer": a, "prediction": p, **dict(zip("ABCD", ["x", "y", "z", "w"][:n] + [None] * (4 - n)))}
            for i, a, p, n in spec]


def test_circular_accuracy_needs_every_rotation_right():
    rows = rows_of([
        (1, "A", "A", 3), (1_000_001, "C", "(C)", 3), (2_000_001, "B", "Answer: B", 3),  # right
        (2, "B", "B", 2), (1_000_002, "A", None, 2),                                      # error row
        (3, "D", "w", 4),                                                                 # option text
        (4, "A", "A or B", 2),                                                            # two letters
    ])
    assert circular_accuracy(pl.DataFrame(rows)) == pytest.approx(2 / 4)
    assert ref.circular_accuracy(rows) == pytest.approx(2 / 4)


def test_an_answer_whose_option_is_absent_is_a_miss_not_an_error():
    rows = [{"index": 1, "answer": "C", "prediction": "C", "A": "x", "B": "y", "C": "None", "D": None},
            {"index": 2, "answer": "A", "prediction": "A", "A": "x", "B": "y", "C": "None", "D": None}]
    assert circular_accuracy(pl.DataFrame(rows)) == 0.5


def test_circular_accuracy_equals_reference_on_random_rows():
    rng = random.Random(5)
    rows = []
    for question in range(500):
        opts = {k: (None if isinstance(v, float) else v) for k, v in options(rng).items()}
        n = len(ref.offered(opts))
        for rotation in range(rng.choice([1, 3, 4, 4])):
            answer = rng.choice("ABCD"[:n]) if rng.random() < 0.95 else rng.choice("ABCD")
            rows.append({"index": rotation * 1_000_000 + question, "answer": answer,
                         "prediction": answer if rng.random() < 0.5 else prediction(rng, opts), **opts})
    df = pl.DataFrame(rows, schema={"index": pl.Int64, "answer": pl.String, "prediction": pl.String,
                                    **{c: pl.String for c in "ABCD"}})
    assert circular_accuracy(df) == pytest.approx(ref.circular_accuracy(rows), abs=1e-12)


@pytest.mark.parametrize("rows, message", [
    ([{"index": 1, "answer": "E", "prediction": "A", "A": "x", "B": "y"}], r"holds \['E'\], not one of"),
    ([{"index": 1, "answer": "A", "prediction": "A"}], "option columns"),
    ([{"index": "1", "answer": "A", "prediction": "A", "A": "x"}], "'index' has dtype"),
    ([{"index": 1_000_001, "answer": "A", "prediction": "A", "A": "x"}], "1 rotation row"),
])
def test_circular_accuracy_rejects_bad_input(rows, message):
    with pytest.raises(ValueError, match=message):
        circular_accuracy(pl.DataFrame(rows))


@pytest.mark.parametrize("bench", ["mmbench", "mmbench_cn"])
def test_score_predictions_applies_can_infer_and_the_circular_rule(bench):
    spec = [  # (index, answer, prediction, options, error)
        (1, "A", "(A)", CN, None), (1_000_001, "B", "狗", CN, None),             # right: wrapped letter, text
        (2, "C", "The answer is C.", EN, None), (1_000_002, "A", "B", EN, None),  # one rotation wrong
        (3, "A", "A、", CN, None),                                                # Chinese comma: a miss
        (4, "B", "Answer: B", EN, None), (1_000_004, "A", "A", EN, "ImageError: bad"),  # error row
        (5, "B", "It is red", EN, None),                                          # option text
    ]
    df = pl.DataFrame({
        "benchmark": bench, "variant": "full", "method": "full", "budget": pl.Series([576] * len(spec), dtype=pl.Int32),
        "sample_id": [str(i) for i, *_ in spec], "prediction": [p for _, _, p, _, _ in spec],
        "error": [e for *_, e in spec],
        "targets": [json.dumps({"index": i, "answer": a, **{c: o.get(c) for c in "ABCD"}}, ensure_ascii=False)
                    for i, a, _, o, _ in spec],
    }, schema_overrides={"error": pl.String})
    metrics = score_predictions(df)
    assert metrics["metric"].to_list() == ["circular_accuracy"]
    assert metrics["value"].to_list() == [pytest.approx(2 / 5)] and metrics["n_errors"].to_list() == [1]
