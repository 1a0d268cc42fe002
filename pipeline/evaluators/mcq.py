"""Multiple choice, ScienceQA-IMG: letter extraction as in LLaVA-1.5 (``llava/eval/eval_science_qa.py``), accuracy.

``extract_choice(text, options)`` (``options``: the letters this question offers, e.g. A-D), on the
stripped text, first rule that applies:
1. the text is one of ``options`` → it;
2. at least 3 characters, ``text[1:3] == ". "`` and ``text[0]`` in A-E (or ``options``) → ``text[0]``
   if it is offered, else None (LLaVA-1.5 takes the letter and then finds it out of range);
   so "B." alone matches neither rule 1 nor rule 2;
3. ``The answer is ([A-Z]).`` matches exactly once → that letter if offered, else None;
4. None.
None is wrong. A null prediction (error row) is None. Accuracies are fractions in [0, 1].
MMBench is scored by ``mmbench`` (VLMEvalKit's matching), not by this rule.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from pipeline.evaluators.frame import as_string, named_like, require_columns, require_no_nulls, require_rows

LLAVA_LETTERS = ("A", "B", "C", "D", "E")
ANSWER_IS = r"The answer is ([A-Z])."
_WS = r"[\s\x1c-\x1f]"  # Python's str.isspace


def option_letters(n: int) -> list[str]:
    """The letters of ``n`` choices: A, B, ..."""
    if not 1 <= n <= 26:
        raise ValueError(f"option_letters: need 1..26 choices, got {n}")
    return [chr(ord("A") + i) for i in range(n)]


def extract_choice_expr(text: pl.Expr, options: pl.Expr) -> pl.Expr:
    """Extracted letter (String, null = none) per row; ``options`` is a List(String) expression."""
    source, text = text, text.str.replace_all(f"^{_WS}+|{_WS}+$", "")
    first = text.str.slice(0, 1)
    offered_first = options.list.contains(first)
    prefixed = (
        (text.str.len_chars() >= 3)
        & (text.str.slice(1, 2) == ". ")
        & (first.is_in(LLAVA_LETTERS) | offered_first)
    )
    stated = text.str.extract(ANSWER_IS, 1)
    return named_like(
        pl.when(options.list.contains(text)).then(text)
        .when(prefixed).then(pl.when(offered_first).then(first))
        .when((text.str.count_matches(ANSWER_IS) == 1) & options.list.contains(stated)).then(stated),
        source,
    )


def _letters(options: Sequence[str] | Mapping[str, str]) -> list[str]:
    """Offered letters from letters, a letter → text mapping, or the option texts in order."""
    if isinstance(options, Mapping):
        return list(options)
    options = list(options)
    if all(isinstance(o, str) and len(o) == 1 and "A" <= o <= "Z" for o in options):
        return options
    return option_letters(len(options))


def extract_choice(text: str | None, options: Sequence[str] | Mapping[str, str]) -> str | None:
    """The letter chosen by ``text``, or None (see module doc).

    ``options``: the offered letters (["A", "B", "C"]), a letter → option text mapping, or the
    option texts in order (lettered A, B, ...).
    """
    if text is not None and not isinstance(text, str):
        raise TypeError(f"extract_choice: expected str or None, got {type(text).__name__}")
    frame = pl.DataFrame({"text": [text], "options": [_letters(options)]},
                         schema={"text": pl.String, "options": pl.List(pl.String)})
    return frame.select(extract_choice_expr(pl.col("text"), pl.col("options"))).item()


def _require_letters(df: pl.DataFrame, answer: str, options: pl.Expr, who: str) -> None:
    offered = df.select(options.list.contains(pl.col(answer))).to_series()
    if not offered.all():
        raise ValueError(f"{who}: column {answer!r} names a letter that is not among the row's options "
                         f"in {(~offered).sum()} row(s)")


def choice_accuracy(
    df: pl.DataFrame, pred_col: str = "prediction", answer_col: str = "answer", options_col: str = "options"
) -> float:
    """Fraction of rows whose extracted letter equals ``answer`` (ScienceQA-IMG).

    ``df[options_col]``: List(String) of the offered letters (``option_letters(len(choices))``).
    """
    who = "choice_accuracy"
    require_columns(df, {pred_col: (pl.String, pl.Null), answer_col: (pl.String,), options_col: (pl.List,)}, who)
    require_no_nulls(df, answer_col, who)
    require_rows(df, who)
    _require_letters(df, answer_col, pl.col(options_col), who)
    frame = df.select(pl.col(answer_col).alias("answer"), pl.col(options_col).alias("options"))
    frame = frame.with_columns(prediction=as_string(df, pred_col))
    correct = extract_choice_expr(pl.col("prediction"), pl.col("options")) == pl.col("answer")
    return float(frame.select(correct.fill_null(False).mean()).item())
