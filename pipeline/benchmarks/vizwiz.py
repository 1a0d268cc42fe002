"""VizWiz-VQA val: the "Unanswerable" instruction before the short-answer suffix, VQA accuracy.

The test split is scored by the EvalAI server from ``submission.vizwiz_submission``. VizWiz has
one question per image, named by ``question_id`` (the image file is ``{question_id}.jpg``).
"""
from __future__ import annotations

from pipeline.benchmarks.base import IMAGE, SHORT_ANSWER, STRING, STRINGS, Benchmark, vqa_accuracy_score

UNANSWERABLE = "\nWhen the provided information is insufficient, respond with 'Unanswerable'."


class VizWiz(Benchmark):
    name = "vizwiz"
    hf_id = "lmms-lab/VizWiz-VQA"
    split = "val"
    columns = {"question_id": STRING, "question": STRING, "image": IMAGE, "answers": STRINGS}
    id_column = "question_id"
    image_id_column = "question_id"
    headline = "accuracy"

    def prompt(self, row):
        return f"{row['question'] or ''}{UNANSWERABLE}{SHORT_ANSWER}"

    def targets(self, row):
        return {"question_id": row["question_id"], "answers": list(row["answers"] or []),
                "category": row.get("category")}

    def score(self, df):
        return vqa_accuracy_score(df)
