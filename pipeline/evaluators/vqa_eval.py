"""VQAv2 and VizWiz accuracy as their evaluation servers compute it, vectorized in polars.

**VQAv2** follows GT-Vision-Lab/VQA ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` (commit
a013f00, "Fixed processing answers bug") applied to what LLaVA-1.5 uploads
(``scripts/convert_vqav2_for_submission.py``: each prediction through the EvalAI answer processor,
``vqa.normalize_series``). Per question, with ``N`` ground-truth answers:

1. prediction and answers: ``\\n`` and ``\\t`` → space, then stripped;
2. only if the stripped answers are not all identical, the prediction and every answer go through
   ``processPunctuation`` + ``processDigitArticle`` (``vqa.process_series``); when all ``N`` are
   the same string nothing is normalized, so a prediction must equal it character for character
   (ten ``"3-d"`` and the processed prediction ``"3 d"`` score 0; so do ten ``"man's"`` against
   ``"man 's"``);
3. leave-one-out averaging: for each answer ``i``, ``min(1, #(other answers equal to the
   prediction) / 3)``, then the mean over ``i`` (for ten answers: the mean over the ten subsets of
   nine). The server compares answer records, which differ by ``answer_id``, so "other" means every
   position but ``i``.

**VizWiz** follows the VizWiz-VQA challenge's ``vqaEval.py`` (``VQAEval`` of the VizWiz Python API by
Qing Li, distributed with the dataset at vizwiz.org/tasks-and-datasets/vqa), applied to LLaVA's
``scripts/convert_vizwiz_for_submission.py`` output (EvalAI answer processor). It differs from
``vqaEval.py``: the prediction is always processed (steps 1 and 2 without the all-identical
condition) and the ground-truth answers never are, not even stripped; its contraction table is the
VQA one from before the apostrophe fix (``VIZWIZ_CONTRACTIONS``: typographic ``’`` except in eight
values and two keys); the leave-one-out average is the same.

Scores are the exact rationals of ``vqa.accuracy_from_matches``. A null prediction (error row) scores 0.
"""
from __future__ import annotations

import polars as pl

from pipeline.evaluators.frame import as_string
from pipeline.evaluators.vqa import (
    CONTRACTIONS,
    accuracy_from_matches,
    answer_lists,
    distinct_mapped,
    flat_rows,
    normalize_series,
    process_series,
)

_WS = r"[\s\x1c-\x1f]"  # Python's str.isspace
# entries of the pre-fix VQA table that kept the plain apostrophe
_PLAIN_VALUES = ("aint", "arent", "cant", "couldve", "couldnt", "weve", "wheres", "whove")
_PLAIN_KEYS = ("couldn'tve", "hadn'tve")


def _typographic(text: str) -> str:
    return text.replace("'", "\u2019")


VIZWIZ_CONTRACTIONS = {
    (k if k in _PLAIN_KEYS else _typographic(k)): (v if k in _PLAIN_VALUES else _typographic(v))
    for k, v in CONTRACTIONS.items()
}


def clean_whitespace(text: pl.Expr) -> pl.Expr:
    """``text.replace('\\n', ' ').replace('\\t', ' ').strip()`` of a String expression."""
    return text.str.replace_all(r"[\n\t]", " ").str.replace_all(f"^{_WS}+|{_WS}+$", "")


def _submitted(df: pl.DataFrame, pred_col: str) -> pl.Series:
    """The uploaded answer: the prediction through the EvalAI processor, then step 1."""
    (pred,) = distinct_mapped(normalize_series, as_string(df, pred_col))
    return pred.to_frame("p").select(clean_whitespace(pl.col("p"))).to_series()


def vqav2_accuracy_frame(df: pl.DataFrame, pred_col: str = "prediction", answers_col: str = "answers") -> pl.Series:
    """Per-row VQAv2 server accuracy in [0, 1] (Float64, ``vqa_accuracy``); ``answers_col``: List(String)
    of the raw annotator answers (at least one per row, no nulls, else ``ValueError``)."""
    lengths, _ = answer_lists(df, pred_col, answers_col, "vqav2_accuracy")
    answers = df.select(pl.col(answers_col).list.eval(clean_whitespace(pl.element()))).to_series()
    varied = answers.list.n_unique() > 1  # per row: step 2 applies
    pred, flat = _submitted(df, pred_col), answers.explode()
    pred_processed, flat_processed = distinct_mapped(process_series, pred, flat)
    rows = flat_rows(lengths)
    both = pl.DataFrame({"varied": varied.gather(rows), "raw": flat, "processed": flat_processed,
                         "said_raw": pred.gather(rows), "said_processed": pred_processed.gather(rows)})
    equal = both.select(
        pl.when("varied").then(pl.col("processed") == pl.col("said_processed")).otherwise(pl.col("raw") == pl.col("said_raw"))
    ).to_series()
    return accuracy_from_matches(equal, lengths)


def vizwiz_accuracy_frame(df: pl.DataFrame, pred_col: str = "prediction", answers_col: str = "answers") -> pl.Series:
    """Per-row VizWiz accuracy in [0, 1] (Float64, ``vqa_accuracy``): the processed prediction against
    the raw ``answers_col`` strings (List(String), at least one per row, no nulls)."""
    lengths, flat = answer_lists(df, pred_col, answers_col, "vizwiz_accuracy")
    (pred,) = distinct_mapped(lambda s: process_series(s, VIZWIZ_CONTRACTIONS), _submitted(df, pred_col))
    return accuracy_from_matches(flat == pred.gather(flat_rows(lengths)), lengths)


def _scores(frame_fn, predictions: list[str | None], answers: list[list[str]], who: str) -> list[float]:
    if len(predictions) != len(answers):
        raise ValueError(f"{who}: {len(predictions)} predictions but {len(answers)} answer lists")
    df = pl.DataFrame({"prediction": predictions, "answers": answers},
                      schema={"prediction": pl.String, "answers": pl.List(pl.String)})
    return frame_fn(df).to_list()


def vqav2_accuracy(predictions: list[str | None], answers: list[list[str]]) -> list[float]:
    """Per-sample VQAv2 server accuracy in [0, 1]; ``predictions[i]`` None scores 0."""
    return _scores(vqav2_accuracy_frame, predictions, answers, "vqav2_accuracy")


def vizwiz_accuracy(predictions: list[str | None], answers: list[list[str]]) -> list[float]:
    """Per-sample VizWiz accuracy in [0, 1]; ``predictions[i]`` None scores 0."""
    return _scores(vizwiz_accuracy_frame, predictions, answers, "vizwiz_accuracy")
