"""MME: yes/no parsing as in lmms-eval's MME task and the official acc + acc+ category scores.

Parsing (lower-case, strip, '.' deleted): "yes"/"no" as is; a single character "y"/"n" → yes/no
(any other single character → other); else "yes" within the first 4 characters → yes, else
"no" there → no, else other. The gold answer gets the same lower/strip/'.' treatment.

Per category: ``100 · acc + 100 · acc+`` with ``acc`` = correct questions / questions and
``acc+`` = images (rows sharing ``question_id``, two per image in MME) with every question right /
images — the definition of MME's ``calculation.py``. ``perception`` and ``cognition`` are the sums
over the categories of each group that are present in the data (a partial run gives a partial
sum; a group with no category present is left out). Categories absent from the data are left out
of the dict. A null prediction (error row) is wrong. ``n`` and ``n_errors`` are counted by the caller.
"""
from __future__ import annotations

import polars as pl

from pipeline.evaluators.frame import named_like, require_columns, require_no_nulls, require_rows

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
_WS = r"[\s\x1c-\x1f]"  # Python's str.isspace


def _clean(text: pl.Expr) -> pl.Expr:
    return text.str.to_lowercase().str.replace_all(f"^{_WS}+|{_WS}+$", "").str.replace_all(".", "", literal=True)


def parse_mme_expr(col: str | pl.Expr) -> pl.Expr:
    """"yes" / "no" / "other" per row of a String column (null stays null)."""
    source = pl.col(col) if isinstance(col, str) else col
    text = _clean(source)
    prefix = text.str.slice(0, 4)
    return named_like(
        pl.when(text.is_in(["yes", "no"])).then(text)
        .when(text.str.len_chars() == 1).then(text.replace_strict({"y": "yes", "n": "no"}, default="other"))
        .when(prefix.str.contains("yes", literal=True)).then(pl.lit("yes"))
        .when(prefix.str.contains("no", literal=True)).then(pl.lit("no"))
        .when(text.is_not_null()).then(pl.lit("other")),
        source,
    )


def parse_mme(text: str) -> str:
    """The MME answer rule on one string."""
    if not isinstance(text, str):
        raise TypeError(f"parse_mme: expected str, got {type(text).__name__}")
    return pl.select(parse_mme_expr(pl.lit(text, dtype=pl.String))).item()


def mme_scores(
    df: pl.DataFrame,
    pred_col: str = "prediction",
    answer_col: str = "answer",
    category_col: str = "category",
    image_col: str = "question_id",
) -> dict[str, float]:
    """Category scores (0-200 each), ``perception`` (0-2000) and ``cognition`` (0-800)."""
    who = "mme_scores"
    require_columns(df, {
        pred_col: (pl.String, pl.Null), answer_col: (pl.String,), category_col: (pl.String,), image_col: (pl.String,),
    }, who)
    for col in (answer_col, category_col, image_col):
        require_no_nulls(df, col, who)
    require_rows(df, who)
    unknown = set(df[category_col].unique()) - set(PERCEPTION) - set(COGNITION)
    if unknown:
        raise ValueError(f"{who}: column {category_col!r} has unknown MME categories {sorted(unknown)}")
    gold = df.select(_clean(pl.col(answer_col))).to_series()
    if not gold.is_in(["yes", "no"]).all():
        raise ValueError(f"{who}: column {answer_col!r} must be yes/no, found {gold.unique().sort().to_list()[:5]}")
    scored = df.select(
        category=pl.col(category_col),
        image=pl.col(image_col),
        correct=(parse_mme_expr(pl.col(pred_col).cast(pl.String)) == gold).fill_null(False),
    )
    per_image = scored.group_by("category", "image").agg(pl.col("correct").sum(), pl.len().alias("questions"))
    per_category = per_image.group_by("category").agg(
        acc=pl.col("correct").sum() / pl.col("questions").sum(),
        acc_plus=(pl.col("correct") == pl.col("questions")).mean(),
    )
    out = {
        category: 100 * acc + 100 * acc_plus
        for category, acc, acc_plus in per_category.sort("category").iter_rows()
    }
    for name, group in (("perception", PERCEPTION), ("cognition", COGNITION)):
        present = [out[c] for c in group if c in out]
        if present:
            out[name] = sum(present)
    return out
