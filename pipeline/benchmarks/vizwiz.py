"""VizWiz-VQA val: the "Unanswerable" instruction before the short-answer suffix, VQA accuracy.

Scored as the VizWiz challenge scores an upload: the prediction through the EvalAI answer processor
(LLaVA's ``scripts/convert_vizwiz_for_submission.py``), then the VizWiz API's ``vqaEval.py``
(vizwiz.org), which processes the prediction but compares it with the raw annotator answers; see
``pipeline.evaluators.vqa_eval`` for where it differs from the VQAv2 server. The paper's VizWiz
numbers are test-server scores; this card scores val. The test split is scored by the EvalAI
server from ``submission.vizwiz_submission``. VizWiz has
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
        return vqa_accuracy_score(df, "vizwiz")
