"""POPE: yes/no parsing as in LLaVA-1.5's ``eval_pope.py`` and per-category binary metrics.

``parse_yes_no``: keep the text before the first '.', delete ',', split on ' '; "no" if a word is
``No``, ``not`` or ``no``, else "yes" (so an empty or off-topic answer counts as "yes").

``pope_metrics`` returns fractions in [0, 1], per category ``{category}/accuracy``,
``/precision``, ``/recall``, ``/f1``, ``/yes_ratio``; the same over all rows as ``pooled/...``;
and ``mean_f1``, the mean of the per-category F1 (the headline, as LLaVA-1.5 reports POPE).
"Yes" is the positive class. A null prediction (error row) is no answer: wrong for accuracy,
a false negative on a "yes" question, never a predicted "yes". A precision or recall with an
empty denominator is 0 (the original script divides by zero), and so is F1 when both are 0.
``n`` and ``n_errors`` are counted by the caller.
"""
from __future__ import annotations

import polars as pl

from pipeline.evaluators.frame import named_like, require_columns, require_no_nulls, require_rows

NO_WORDS = ("No", "not", "no")


def parse_yes_no_expr(col: str | pl.Expr) -> pl.Expr:
    """"yes" / "no" per row of a String column (null stays null)."""
    text = pl.col(col) if isinstance(col, str) else col
    first_sentence = text.str.replace(r"(?s)\..*", "").str.replace_all(",", "", literal=True)
    has_no = first_sentence.str.contains(f"(?:^| )(?:{'|'.join(NO_WORDS)})(?: |$)")
    return named_like(pl.when(has_no).then(pl.lit("no")).when(has_no.is_not_null()).then(pl.lit("yes")), text)


def parse_yes_no(text: str) -> str:
    """LLaVA-1.5's POPE answer rule on one string."""
    if not isinstance(text, str):
        raise TypeError(f"parse_yes_no: expected str, got {type(text).__name__}")
    return pl.select(parse_yes_no_expr(pl.lit(text, dtype=pl.String))).item()


def _binary(pred: pl.Expr, label: pl.Expr) -> list[pl.Expr]:
    said_yes, is_yes = (pred == "yes").fill_null(False), label == "yes"
    tp = (said_yes & is_yes).sum()
    fp = (said_yes & ~is_yes).sum()
    fn = (~said_yes & is_yes).sum()
    correct = (pred == label).fill_null(False).sum()
    precision = pl.when(tp + fp > 0).then(tp / (tp + fp)).otherwise(0.0)
    recall = pl.when(tp + fn > 0).then(tp / (tp + fn)).otherwise(0.0)
    f1 = pl.when(precision + recall > 0).then(2 * precision * recall / (precision + recall)).otherwise(0.0)
    return [
        (correct / pl.len()).alias("accuracy"),
        precision.alias("precision"),
        recall.alias("recall"),
        f1.alias("f1"),
        (said_yes.sum() / pl.len()).alias("yes_ratio"),
    ]


def pope_metrics(
    df: pl.DataFrame, pred_col: str = "prediction", answer_col: str = "answer", category_col: str = "category"
) -> dict[str, float]:
    """Metrics of ``df[pred_col, answer_col ("yes"/"no", any case), category_col]`` (see module doc)."""
    who = "pope_metrics"
    require_columns(df, {pred_col: (pl.String, pl.Null), answer_col: (pl.String,), category_col: (pl.String,)}, who)
    for col in (answer_col, category_col):
        require_no_nulls(df, col, who)
    require_rows(df, who)
    frame = df.select(
        pred=parse_yes_no_expr(pl.col(pred_col).cast(pl.String)),
        label=pl.col(answer_col).str.strip_chars().str.to_lowercase(),
        category=pl.col(category_col),
    )
    bad = frame.filter(~pl.col("label").is_in(["yes", "no"]))
    if bad.height:
        raise ValueError(
            f"{who}: column {answer_col!r} must be yes/no, found {bad['label'].unique().sort().to_list()[:5]}"
        )
    if "pooled" in frame["category"]:
        raise ValueError(f"{who}: column {category_col!r} uses the reserved category name 'pooled'")
    metrics = _binary(pl.col("pred"), pl.col("label"))
    per_category = frame.group_by("category").agg(metrics).sort("category")
    out: dict[str, float] = {}
    for row in per_category.iter_rows(named=True):
        category = row.pop("category")
        out.update({f"{category}/{k}": float(v) for k, v in row.items()})
    out.update({f"pooled/{k}": float(v) for k, v in frame.select(metrics).row(0, named=True).items()})
    out["mean_f1"] = float(per_category["f1"].mean())
    return out
