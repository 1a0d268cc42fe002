"""MME: the short-answer suffix replaces the dataset's " Please answer yes or no."; scores are
100·acc + 100·acc+ per category (acc+: both questions of an image right), summed into
``perception`` (10 categories, max 2000) and ``cognition`` (4 categories, max 800), with the
yes/no/other parse of the MME authors' ``eval_tool/calculation.py`` (BradyFU/Awesome-Multimodal-
Large-Language-Models, branch Evaluation); see ``pipeline.evaluators.mme``.

The two questions of an image share its ``question_id`` (the image file); a sample is named by
that id and a digest of its question.
"""
from __future__ import annotations

import hashlib

import polars as pl

from pipeline.benchmarks.base import IMAGE, SHORT_ANSWER, STRING, Benchmark, with_targets

YES_NO = "Please answer yes or no."
TARGETS = pl.Struct({"question_id": pl.String, "category": pl.String, "answer": pl.String})


class MME(Benchmark):
    name = "mme"
    hf_id = "lmms-lab/MME"
    split = "test"
    columns = {"question_id": STRING, "question": STRING, "answer": STRING, "category": STRING, "image": IMAGE}
    image_id_column = "question_id"
    headline = "perception"

    def sample_id(self, row, index):
        digest = hashlib.sha256((row["question"] or "").encode()).hexdigest()[:8]
        return f"{row['question_id']}#{digest}"

    def prompt(self, row):
        question = row["question"] or ""
        if question.endswith(YES_NO):
            question = question[: -len(YES_NO)].rstrip()
        return f"{question}{SHORT_ANSWER}"

    def targets(self, row):
        return {"question_id": row["question_id"], "category": row["category"], "answer": row["answer"]}

    def score(self, df):
        from pipeline.evaluators.mme import mme_scores

        return mme_scores(with_targets(df, TARGETS))
