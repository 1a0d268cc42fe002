"""TextVQA validation: short-answer prompt with LLaVA-1.5's OCR-token line, VQA accuracy.

Scored as LLaVA's ``llava/eval/eval_textvqa.py`` does (``m4c_evaluator.TextVQAAccuracyEvaluator``:
prediction and every answer through the EvalAI answer processor), ``pipeline.evaluators.vqa``.

LLaVA-1.5 gave the model the dataset's OCR tokens (``\\nReference OCR token: a, b, c`` before the
suffix, only when the row has tokens); ``TextVQA(ocr_tokens=False)`` asks without them, as
lmms-eval does by default.
"""
from __future__ import annotations

from pipeline.benchmarks.base import IMAGE, INT, SHORT_ANSWER, STRING, STRINGS, Benchmark, vqa_accuracy_score


class TextVQA(Benchmark):
    name = "textvqa"
    hf_id = "lmms-lab/textvqa"
    split = "validation"
    columns = {"question_id": INT, "question": STRING, "image": IMAGE, "image_id": STRING,
               "answers": STRINGS, "ocr_tokens": STRINGS}
    id_column = "question_id"
    image_id_column = "image_id"
    headline = "accuracy"

    def __init__(self, hf_id=None, config=None, split=None, ocr_tokens: bool = True):
        super().__init__(hf_id, config, split)
        self.ocr_tokens = ocr_tokens

    def prompt(self, row):
        tokens = row["ocr_tokens"] or []
        ocr = f"\nReference OCR token: {', '.join(tokens)}" if self.ocr_tokens and tokens else ""
        return f"{row['question'] or ''}{ocr}{SHORT_ANSWER}"

    def targets(self, row):
        return {"question_id": row["question_id"], "answers": list(row["answers"] or [])}

    def score(self, df):
        return vqa_accuracy_score(df)
