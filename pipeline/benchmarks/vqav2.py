"""VQAv2 validation: short-answer prompt, VQA accuracy over the ten annotator answers.

Scored as the VQA server scores an upload: the prediction through the EvalAI answer processor
(LLaVA's ``scripts/convert_vqav2_for_submission.py``), then GT-Vision-Lab/VQA
``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` against the raw annotator answers, quirks
included (nothing is normalized when all ten answers are the same string); see
``pipeline.evaluators.vqa_eval``. The paper's VQAv2 numbers are test-dev server scores; this card
scores validation. The test-dev split has no answers; it is scored by the EvalAI server from
``pipeline.benchmarks.submission.vqav2_submission``.
"""
from __future__ import annotations

from pipeline.benchmarks.base import IMAGE, INT, SHORT_ANSWER, STRING, STRUCTS, Benchmark, vqa_accuracy_score


class VQAv2(Benchmark):
    name = "vqav2"
    hf_id = "lmms-lab/VQAv2"
    split = "validation"
    columns = {"question_id": INT, "question": STRING, "image": IMAGE, "image_id": INT, "answers": STRUCTS}
    id_column = "question_id"
    image_id_column = "image_id"
    headline = "accuracy"

    def prompt(self, row):
        return f"{row['question'] or ''}{SHORT_ANSWER}"

    def targets(self, row):
        return {"question_id": row["question_id"], "answers": [a["answer"] for a in row["answers"] or []]}

    def score(self, df):
        return vqa_accuracy_score(df, "vqav2")
