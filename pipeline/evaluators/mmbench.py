"""MMBench / MMBench-CN: VLMEvalKit's circular evaluation in its exact-matching mode, in polars.

Follows open-compass/VLMEvalKit (commit e8e78f0): ``vlmeval/utils/matching_util.py`` (``can_infer``
= ``can_infer_option``, else ``can_infer_text``) and ``vlmeval/dataset/utils/multiple_choice.py``
(``mcq_circular_eval`` with ``model=None``: no LLM fallback, a prediction nothing can be inferred
from is a miss).

**Options.** An option is absent when it is null, NaN, or a string that is empty, "nan" or "none"
(any case, surrounding whitespace ignored); the list stops at the first absent option (LLaVA's
``model_vqa_mmbench.py`` rule plus empty strings; VLMEvalKit's ``build_choices`` skips the cells pandas
reads as NaN instead, the same on MMBench's contiguous options). The prompt
(``offered_options``) and the scorer (``offered_expr``) apply the same rule. An answer letter whose
option is absent can never be inferred: that row is a miss (as in VLMEvalKit), not an error.

**can_infer_option** (``answer``: the prediction; letters: the offered ones), first rule that applies:

1. the answer contains "Failed to obtain answer via API": no letter (go to text matching);
2. it contains one of four refusals ("Sorry, I can't help with images of people yet.", "I can't
   process this file.", "I'm sorry, but without the image provided", "Cannot determine the
   answer"): "Z" (a miss);
3. each of ``.()[],:;!*#{}`` becomes a space and the answer is split on whitespace; if exactly one
   offered letter is a token and its first occurrence is among the last four tokens: that letter
   ("B.", "(A)", "Answer: A", "**C**", "The answer is D"); two offered letters: none ("A or B");
4. no offered letter is a token but "Z" is: "Z";
5. ``(?i)(?:correct\\s+)?answer\\s+is\\s+\\**([ABCD])\\**`` found (first match, case-insensitive, no
   word boundary: "the answer is b", even "The answer is Apple" → A) and the letter is offered: it;
6. none. (``VERBOSE`` unset: the "A might be a quantifier" rule is off, as by default.)

**can_infer_text** (when 1-6 gave none): if the lower-cased answer is no longer than twice the
summed length of the offered option texts and exactly one lower-cased option text occurs in it
(substring), that option's letter ("GREEN" for an option "green", "一只猫").

**Circular accuracy.** A question is the row with ``index < 1,000,000`` plus its rotations
``index + k·1,000,000``; it is right only if every row of the group infers its own answer. The
score is the fraction of questions right. A rotation without its question row raises.
A null prediction (error row) is a miss.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from pipeline.evaluators.frame import named_like, require_columns, require_no_nulls, require_rows

OPTION_COLUMNS = ("A", "B", "C", "D", "E")
ROTATION = 1_000_000
ABSENT = ("", "nan", "none")
API_FAILURE = "Failed to obtain answer via API"
REFUSALS = (
    "Sorry, I can't help with images of people yet.", "I can't process this file.",
    "I'm sorry, but without the image provided", "Cannot determine the answer",
)
SEPARATORS = ".()[],:;!*#{}"
_WS = r"[\s\x1c-\x1f]"  # Python's str.isspace (str.split, re's \s)
ANSWER_IS = rf"(?i)(?:correct{_WS}+)?answer{_WS}+is{_WS}+\**([ABCD])\**"


def is_absent(value: Any) -> bool:
    """True for an absent MMBench option: None, NaN, or "" / "nan" / "none" (any case, stripped)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    return isinstance(value, str) and value.strip().lower() in ABSENT


def offered_options(row: Mapping, letters: Sequence[str] = OPTION_COLUMNS) -> list[tuple[str, str]]:
    """``[(letter, text), ...]`` of a row's options, up to the first absent one."""
    out = []
    for letter in letters:
        value = row.get(letter)
        if is_absent(value):
            break
        out.append((letter, str(value)))
    return out


def offered_expr(columns: Sequence[str]) -> list[pl.Expr]:
    """Per option column, its text where offered (up to the first absent option of the row), else null."""
    out, still = [], pl.lit(True)
    for col in columns:
        text = pl.col(col).cast(pl.String)
        still = still & text.is_not_null() & ~text.str.strip_chars().str.to_lowercase().is_in(ABSENT)
        out.append(pl.when(still).then(text))
    return out


def _option_letter(answer: pl.Expr, options: Sequence[pl.Expr], letters: Sequence[str]) -> pl.Expr:
    """Rules 1-6 of ``can_infer_option`` (null = none)."""
    spaced = answer.str.replace_all("[" + "".join("\\" + c for c in SEPARATORS) + "]", " ")
    words = spaced.str.replace_all(f"^{_WS}+|{_WS}+$", "").str.replace_all(f"{_WS}+", " ")
    tokens = pl.when(words == "").then(pl.lit([], dtype=pl.List(pl.String))).otherwise(words.str.split(" "))
    early = tokens.list.slice(0, (tokens.list.len().cast(pl.Int64) - 4).clip(0))  # all but the last four
    named = [option.is_not_null() & tokens.list.contains(letter) for letter, option in zip(letters, options)]
    count = pl.sum_horizontal([n.cast(pl.Int32) for n in named])
    single = pl.coalesce([pl.when(n & ~early.list.contains(letter)).then(pl.lit(letter))
                          for letter, n in zip(letters, named)])
    stated = answer.str.extract(ANSWER_IS, 1).str.to_uppercase()
    stated_offered = pl.any_horizontal([(stated == letter) & option.is_not_null()
                                        for letter, option in zip(letters, options)])
    refused = pl.any_horizontal([answer.str.contains(r, literal=True) for r in REFUSALS])
    return (
        pl.when(answer.str.contains(API_FAILURE, literal=True)).then(pl.lit(None, dtype=pl.String))
        .when(refused).then(pl.lit("Z"))
        .when((count == 1) & single.is_not_null()).then(single)
        .when((count == 0) & tokens.list.contains("Z")).then(pl.lit("Z"))
        .when(stated_offered.fill_null(False)).then(stated)
    )


def _text_letter(answer: pl.Expr, options: Sequence[pl.Expr], letters: Sequence[str]) -> pl.Expr:
    """``can_infer_text`` (null = none)."""
    lower = answer.str.to_lowercase()
    budget = 2 * pl.sum_horizontal([o.str.len_chars().fill_null(0) for o in options])
    found = [option.is_not_null() & lower.str.contains(option.str.to_lowercase(), literal=True).fill_null(False)
             for option in options]
    count = pl.sum_horizontal([f.cast(pl.Int32) for f in found])
    letter = pl.coalesce([pl.when(f).then(pl.lit(letter)) for letter, f in zip(letters, found)])
    return pl.when((lower.str.len_chars() <= budget) & (count == 1)).then(letter)


def can_infer_expr(text: pl.Expr, options: Sequence[pl.Expr]) -> pl.Expr:
    """The inferred letter per row (String; "Z" for a refusal; null = nothing inferred).

    ``options``: one String expression per letter A, B, ... holding the option's text where that
    letter is offered, null where it is not (``offered_expr``).
    """
    letters = OPTION_COLUMNS[: len(options)]
    return named_like(pl.coalesce(_option_letter(text, options, letters), _text_letter(text, options, letters)), text)


def can_infer(text: str | None, options: Mapping[str, str]) -> str | None:
    """The letter VLMEvalKit's ``can_infer`` reads from ``text`` given ``{letter: option text}``
    (the offered options, from A on), or None."""
    if text is not None and not isinstance(text, str):
        raise TypeError(f"can_infer: expected str or None, got {type(text).__name__}")
    letters = list(options)
    if letters != list(OPTION_COLUMNS[: len(letters)]):
        raise ValueError(f"can_infer: options must be lettered A, B, ... in order, got {letters}")
    frame = pl.DataFrame({"text": [text], **{k: [v] for k, v in options.items()}},
                         schema={"text": pl.String, **{k: pl.String for k in letters}})
    return frame.select(can_infer_expr(pl.col("text"), [pl.col(k) for k in letters])).item()


def circular_accuracy(
    df: pl.DataFrame, pred_col: str = "prediction", answer_col: str = "answer", index_col: str = "index"
) -> float:
    """MMBench circular accuracy in [0, 1] (see module doc).

    ``df``: ``index`` (integer), ``answer`` (a letter of the option columns), ``prediction``
    (String, null = error row), option columns A-D (E if present), String or null.
    """
    who = "circular_accuracy"
    letters = [c for c in OPTION_COLUMNS if c in df.columns]
    require_columns(df, {
        pred_col: (pl.String, pl.Null), answer_col: (pl.String,), index_col: (pl.datatypes.IntegerType,),
        **{c: (pl.String, pl.Null) for c in letters},
    }, who)
    for col in (answer_col, index_col):
        require_no_nulls(df, col, who)
    require_rows(df, who)
    if not letters or letters != list(OPTION_COLUMNS[: len(letters)]):
        raise ValueError(f"{who}: option columns must be A, B, ... in order, found {letters} in {df.columns}")
    bad = df.filter(~pl.col(answer_col).is_in(letters))[answer_col].unique().sort()
    if bad.len():
        raise ValueError(f"{who}: column {answer_col!r} holds {bad.head(5).to_list()}, not one of {letters}")
    frame = df.select(
        group=pl.col(index_col) % ROTATION,
        main=pl.col(index_col) < ROTATION,
        right=(can_infer_expr(pl.col(pred_col).cast(pl.String), offered_expr(letters)) == pl.col(answer_col))
        .fill_null(False),
    )
    orphans = frame.filter(~pl.col("group").is_in(frame.filter("main")["group"].implode()))
    if orphans.height:
        raise ValueError(f"{who}: {orphans.height} rotation row(s) without their question row "
                         f"(index % {ROTATION:,} in {orphans['group'].unique().sort().head(5).to_list()})")
    per_group = frame.group_by("group").agg(pl.col("right").all())
    return float(per_group["right"].mean())
