"""MME: the yes/no parse and the acc + acc+ scores of the MME authors' ``calculation.py``.

Follows ``eval_tool/calculation.py`` of BradyFU/Awesome-Multimodal-Large-Language-Models, branch
Evaluation (``tools/eval_tool.zip``), as LLaVA-1.5 feeds it (``convert_answer_to_mme.py``: the
stripped model output as the last column).

Parsing (``parse_pred_ans``; the text is only lower-cased, never stripped or cleaned): "yes" or "no"
as is; else "yes" if "yes" occurs in the first 4 characters, else "no" if "no" does, else "other".
So "y", "n" and "Y." are "other", "Nope" and "not sure" are "no", "The answer is yes" is "other".
(The tool reads the answer with its line's newline, which never changes the label: the first four
characters still hold the "yes"/"no" of a short answer.) The gold answer is lower-cased and must
be yes/no. "other" is wrong.

Per category: ``100 · acc + 100 · acc+`` with ``acc`` = correct questions / questions (sklearn's
``accuracy_score`` over yes/no/other) and ``acc+`` = images with every question right / images.
The tool walks the answer file in consecutive pairs (two questions per image in MME); here an image
is the set of rows sharing ``question_id`` (the same when every image has its two questions).
``perception`` and ``cognition`` are the sums over the categories of each group present in the
data (a partial run gives a partial sum; a group with no category present is left out).
Categories absent from the data are left out of the dict. A null prediction (error row) is wrong.
``n`` and ``n_errors`` are counted by the caller.
"""
from __future__ import annotations

import polars as pl

from pipeline.evaluators.frame import named_like, require_columns, require_no_nulls, require_rows

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def parse_mme_expr(col: str | pl.Expr) -> pl.Expr:
    """"yes" / "no" / "other" per row of a String column (null stays null)."""
    source = pl.col(col) if isinstance(col, str) else col
    text = source.str.to_lowercase()
    prefix = text.str.slice(0, 4)
    return named_like(
        pl.when(text.is_in(["yes", "no"])).then(text)
        .when(prefix.str.contains("yes", literal=True)).then(pl.lit("yes"))
        .when(prefix.str.contains("no", literal=True)).then(pl.lit("no"))
        .when(text.is_not_null()).then(pl.lit("other")),
        source,
    )


def parse_mme(text: str) -> str:
    """The MME tool's yes/no/other label of one answer."""
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
    gold = df[answer_col].str.to_lowercase()
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
