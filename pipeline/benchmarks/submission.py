"""Answer files for the server-scored splits: VQAv2 test-dev (EvalAI) and VizWiz test.

Input: a prediction frame ``[sample_id, prediction, error]`` of one method × budget. Answers go
through the EvalAI answer processor, as LLaVA-1.5's conversion scripts do; an error row (null
prediction or error set) is answered ``""`` so that no question is missing from the file.

    records = vqav2_submission(df, question_ids=all_test_ids)
    write_json(records, "vqav2_testdev_icctp_64.json")
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import polars as pl

from pipeline.benchmarks.base import ANSWERED

VIZWIZ_TEST_ID = re.compile(r"VizWiz_test_\d{8}")


def _answers(df: pl.DataFrame, who: str) -> pl.DataFrame:
    """``[sample_id, answer]``: normalized answers, ``""`` on error rows; duplicate ids are an error."""
    from pipeline.evaluators.vqa import normalize_expr

    duplicated = df.filter(pl.col("sample_id").is_duplicated())["sample_id"].unique().sort()
    if len(duplicated):
        raise ValueError(f"{who}: sample_id repeated in the predictions: {duplicated.head(5).to_list()}")
    return df.select("sample_id", ANSWERED).select(
        "sample_id", answer=normalize_expr(pl.col("prediction")).fill_null("")
    )


def vqav2_submission(df: pl.DataFrame, question_ids: Iterable[int] | None = None) -> list[dict]:
    """EvalAI VQAv2 records ``[{"question_id": int, "answer": str}]``, one per prediction row.

    ``question_ids``: every question the server expects (EvalAI's test-dev phase takes a file
    covering all of test2015); ids without a prediction are answered ``""``, and a prediction
    whose id is not among them is an error. Records follow ``question_ids`` (else ``df``) order.
    """
    who = "vqav2_submission"
    answers = _answers(df, who)
    if not answers["sample_id"].str.contains(r"^\d+$").all():
        bad = answers.filter(~pl.col("sample_id").str.contains(r"^\d+$"))["sample_id"].head(5).to_list()
        raise ValueError(f"{who}: sample_id is not a VQAv2 question id: {bad}")
    by_id = dict(zip(answers["sample_id"].cast(pl.Int64).to_list(), answers["answer"].to_list()))
    if question_ids is None:
        return [{"question_id": q, "answer": a} for q, a in by_id.items()]
    ids = [int(q) for q in question_ids]
    unknown = sorted(set(by_id) - set(ids))
    if unknown:
        raise ValueError(f"{who}: {len(unknown)} predicted question id(s) not in question_ids: {unknown[:5]}")
    return [{"question_id": q, "answer": by_id.get(q, "")} for q in ids]


def vizwiz_submission(df: pl.DataFrame) -> list[dict]:
    """VizWiz test records ``[{"image": "VizWiz_test_XXXXXXXX.jpg", "answer": str}]``, one per row."""
    who = "vizwiz_submission"
    answers = _answers(df, who)
    bad = [s for s in answers["sample_id"].to_list() if not VIZWIZ_TEST_ID.fullmatch(s)]
    if bad:
        raise ValueError(f"{who}: sample_id is not a VizWiz test id (VizWiz_test_XXXXXXXX): {bad[:5]}")
    return [{"image": f"{s}.jpg", "answer": a} for s, a in answers.iter_rows()]


def write_json(records: list[dict], path: str | Path) -> Path:
    """Write submission ``records`` as JSON; return the path."""
    path = Path(path)
    path.write_text(json.dumps(records, ensure_ascii=False))
    return path
