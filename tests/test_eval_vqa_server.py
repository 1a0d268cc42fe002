"""VQAv2 (vqaEval.py on the EvalAI-processed upload) and VizWiz (VizWiz API) accuracy: each official
quirk by hand, through the public functions and through ``score_predictions``; polars == reference."""
from __future__ import annotations

import json
import random

import polars as pl
import pytest
import reference_evaluators as ref

from pipeline.evaluators.vqa import process_series
from pipeline.evaluators.vqa_eval import VIZWIZ_CONTRACTIONS, vizwiz_accuracy, vqav2_accuracy
from pipeline.stages.score import score_predictions

VQAV2_CASES = [
    # all ten answers identical: nothing is normalized, the processed upload must equal them verbatim
    ("3-d", ["3-d"] * 10, 0.0),                      # upload "3 d"
    ("man's", ["man's"] * 10, 0.0),                  # upload "man 's"
    ("Yes", ["Yes"] * 10, 0.0),                      # upload "yes", answers keep their capital
    ("two", ["two"] * 10, 0.0),                      # upload "2"
    ("Yes.", ["yes"] * 10, 1.0),
    ("dont", ["don't"] * 10, 1.0),                   # upload "don't"
    ("yes", [" yes\n"] * 10, 1.0),                   # answers are stripped before the comparison
    # answers differ: both sides through processPunctuation + processDigitArticle
    ("3-D", ["3-d"] * 9 + ["3d"], 1.0),              # "3-d" -> "3 d" on both sides
    ("Two", ["two"] * 9 + ["2"], 1.0),
    ("yes", ["Yes"] * 5 + ["yes"] * 5, 1.0),         # lower-cased by processDigitArticle
    ("1,000-2,000", ["1,000-2,000"] * 9 + ["x"], 0.0),  # answer: digit,digit deletes every mark -> "10002000";
                                                        # upload: commas gone first -> "1000 2000"
    ("1,000", ["1,000"] * 5 + ["1000"] * 5, 1.0),
    # leave-one-out over the ten subsets of nine
    ("yes", ["yes"] * 3 + ["no"] * 7, 0.9),          # (3 * min(1, 2/3) + 7 * 1) / 10
    ("yes", ["yes"] * 2 + ["no"] * 8, 0.6),          # (2 * 1/3 + 8 * 2/3) / 10
    ("yes", ["yes"] + ["no"] * 9, 0.3),
    ("cat", ["cat"], 0.0),                           # one answer: its only subset is empty
    (None, ["yes"] * 10, 0.0),                       # error row
]

VIZWIZ_CASES = [
    ("unanswerable", ["Unanswerable"] * 10, 0.0),    # answers are never processed
    ("yes", [" yes"] * 10, 0.0),                     # ... nor stripped
    ("Two", ["2"] * 10, 1.0),                        # the upload always is
    ("two", ["two"] * 10, 0.0),
    ("3-d", ["3 d"] * 10, 1.0),
    ("dont", ["don't"] * 10, 1.0),                   # EvalAI writes "don't"
    ("dont", ["don\u2019t"] * 10, 0.0),
    ("itd\u2019ve", ["it\u2019d\u2019ve"] * 10, 1.0),  # only the VizWiz table has the typographic key
    ("Yes!", ["yes"] * 3 + ["no"] * 7, 0.9),
    ("cat", ["cat"], 0.0),
    (None, ["yes"] * 10, 0.0),
]


@pytest.mark.parametrize("prediction, answers, expected", VQAV2_CASES)
def test_vqav2_server_quirks_by_hand(prediction, answers, expected):
    assert vqav2_accuracy([prediction], [answers]) == [pytest.approx(expected, abs=1e-15)]
    assert ref.vqav2_accuracy(prediction, answers) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("prediction, answers, expected", VIZWIZ_CASES)
def test_vizwiz_quirks_by_hand(prediction, answers, expected):
    assert vizwiz_accuracy([prediction], [answers]) == [pytest.approx(expected, abs=1e-15)]
    assert ref.vizwiz_accuracy(prediction, answers) == pytest.approx(expected, abs=1e-15)


def test_itd_ve_differs_between_the_two_servers():
    assert vqav2_accuracy(["itd\u2019ve"], [["it\u2019d\u2019ve"] * 10]) == [0.0]
    assert vizwiz_accuracy(["itd\u2019ve"], [["it\u2019d\u2019ve"] * 10]) == [1.0]


@pytest.mark.parametrize("text, expected", [
    ("1,000-2,000", "10002000"),     # digit,digit: every mark deleted
    ("left-handed", "left handed"),
    ("Man's", "man's"),              # no word tokenizing: "'s" stays attached
    ("Yes?", "yes"),                 # "?" is one of the marks here
    ("The Two dogs.", "2 dogs"),
])
def test_vqa_eval_processing_without_the_evalai_tokenizer(text, expected):
    assert process_series(pl.Series([text]))[0] == expected
    assert ref.process_digit_article(ref.process_punctuation(text)) == expected


def test_vizwiz_contraction_table_is_the_pre_fix_vqa_table():
    assert len(VIZWIZ_CONTRACTIONS) == 120
    assert VIZWIZ_CONTRACTIONS["dont"] == "don\u2019t"
    assert VIZWIZ_CONTRACTIONS["it\u2019dve"] == "it\u2019d\u2019ve"
    assert VIZWIZ_CONTRACTIONS["weve"] == "we've" and VIZWIZ_CONTRACTIONS["cant"] == "can't"
    assert VIZWIZ_CONTRACTIONS["couldn'tve"] == "couldn\u2019t\u2019ve"
    assert "itd've" not in VIZWIZ_CONTRACTIONS


WORDS = ["yes", "no", "2", "two", "3-d", "man's", "don't", "dont", "t-shirt", "1,000", "1000", "st. louis",
         "black and white", "it\u2019d\u2019ve", "Unanswerable", "unanswerable", "red", "a dog", "dog", "10:30"]


def styled(text: str, rng: random.Random) -> str:
    return rng.choice([text, text, text.capitalize(), text.upper(), f"{text}.", f" {text}\n", f"The {text}!"])


def random_rows(seed: int, n: int) -> tuple[list[str | None], list[list[str]]]:
    """Answers shaped like VQAv2/VizWiz: ten annotators, often unanimous, sometimes styled."""
    rng = random.Random(seed)
    predictions, answers = [], []
    for _ in range(n):
        majority = rng.choice(WORDS)
        agree = rng.choice([10, 10, 10, 9, 7, 5, 3, 1])
        gts = [majority if i < agree else rng.choice(WORDS) for i in range(rng.choice([10, 10, 10, 3, 1]))]
        gts = [styled(g, rng) if rng.random() < 0.05 else g for g in gts]
        rng.shuffle(gts)
        predictions.append(None if rng.random() < 0.03 else styled(rng.choice([majority] * 3 + WORDS), rng))
        answers.append(gts)
    return predictions, answers


def test_polars_equals_reference_on_random_realistic_rows():
    predictions, answers = random_rows(7, 3000)
    assert vqav2_accuracy(predictions, answers) == [ref.vqav2_accuracy(p, a) for p, a in zip(predictions, answers)]
    assert vizwiz_accuracy(predictions, answers) == [ref.vizwiz_accuracy(p, a) for p, a in zip(predictions, answers)]


def frame(bench: str, rows: list[tuple[str | None, list[str]]]) -> pl.DataFrame:
    return pl.DataFrame({
        "benchmark": bench, "variant": "full", "method": "full", "budget": pl.Series([576] * len(rows), dtype=pl.Int32),
        "sample_id": [str(i) for i in range(len(rows))], "prediction": [p for p, _ in rows],
        "error": [None if p is not None else "ImageError: bad" for p, _ in rows],
        "targets": [json.dumps({"answers": a}) for _, a in rows],
    }, schema_overrides={"prediction": pl.String, "error": pl.String})


@pytest.mark.parametrize("bench, cases", [("vqav2", VQAV2_CASES), ("vizwiz", VIZWIZ_CASES)])
def test_score_predictions_averages_the_official_per_question_scores(bench, cases):
    metrics = score_predictions(frame(bench, [(p, a) for p, a, _ in cases]))
    expected = sum(e for _, _, e in cases) / len(cases)
    assert metrics["metric"].to_list() == ["accuracy"]
    assert metrics["value"].to_list() == [pytest.approx(expected, abs=1e-12)]
    assert metrics["n_errors"].to_list() == [1]
