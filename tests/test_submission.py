"""Submission files: every question present, EvalAI-normalized answers, error rows answered ""."""
from __future__ import annotations

import json

import polars as pl
import pytest

from pipeline.benchmarks.submission import vizwiz_submission, vqav2_submission, write_json


def frame(ids, predictions, errors):
    return pl.DataFrame({"sample_id": ids, "prediction": predictions, "error": errors},
                        schema={"sample_id": pl.String, "prediction": pl.String, "error": pl.String})


def test_vqav2_covers_every_question_id_with_normalized_answers(tmp_path):
    df = frame(["11", "12", "13", "14"], ["Two", "Yes.", "kept but errored", None],
               [None, None, "image: cannot identify", "image: cannot identify"])
    records = vqav2_submission(df, question_ids=[14, 13, 12, 11, 10])
    assert records == [
        {"question_id": 14, "answer": ""},
        {"question_id": 13, "answer": ""},
        {"question_id": 12, "answer": "yes"},
        {"question_id": 11, "answer": "2"},
        {"question_id": 10, "answer": ""},
    ]
    path = write_json(records, tmp_path / "testdev.json")
    assert json.loads(path.read_text()) == records


def test_vqav2_without_question_ids_answers_each_row_in_order():
    records = vqav2_submission(frame(["5", "3"], ["A dog", "the cat"], [None, None]))
    assert records == [{"question_id": 5, "answer": "dog"}, {"question_id": 3, "answer": "cat"}]


def test_vqav2_rejects_unknown_duplicate_or_malformed_ids():
    with pytest.raises(ValueError, match=r"not in question_ids: \[99\]"):
        vqav2_submission(frame(["99"], ["x"], [None]), question_ids=[1, 2])
    with pytest.raises(ValueError, match=r"repeated.*\['7'\]"):
        vqav2_submission(frame(["7", "7"], ["x", "y"], [None, None]))
    with pytest.raises(ValueError, match="not a VQAv2 question id"):
        vqav2_submission(frame(["q7"], ["x"], [None]))


def test_vizwiz_names_the_image_file_and_blanks_error_rows():
    df = frame(["VizWiz_test_00000000", "VizWiz_test_00000001"], ["Unanswerable", None], [None, "empty"])
    assert vizwiz_submission(df) == [
        {"image": "VizWiz_test_00000000.jpg", "answer": "unanswerable"},
        {"image": "VizWiz_test_00000001.jpg", "answer": ""},
    ]
    with pytest.raises(ValueError, match="not a VizWiz test id"):
        vizwiz_submission(frame(["VizWiz_val_00000000"], ["x"], [None]))
