"""Exact match (GQA, as LLaVA-1.5 scores it): strip, trailing periods removed, lower-case, equal.

LLaVA-1.5 converts a GQA prediction with ``text.rstrip('.').lower()`` before the official GQA
``eval.py`` compares it with the gold answer; here surrounding whitespace is stripped first and the
gold answer gets the same treatment (GQA gold answers are already in that form).
A null prediction (error row) scores 0.
"""
from __future__ import annotations

import polars as pl

from pipeline.evaluators.frame import as_string, require_columns, require_no_nulls

_WS = r"[\s\x1c-\x1f]"  # Python's str.isspace


def normalize_exact_expr(col: str | pl.Expr) -> pl.Expr:
    """``text.strip().rstrip('.').lower()`` of a String column (null stays null)."""
    text = pl.col(col) if isinstance(col, str) else col
    return text.str.replace_all(f"^{_WS}+|{_WS}+$", "").str.replace(r"\.+$", "").str.to_lowercase()


def normalize_exact(text: str) -> str:
    """``normalize_exact_expr`` on one string."""
    return pl.select(normalize_exact_expr(pl.lit(text, dtype=pl.String))).item()


def exact_match_frame(df: pl.DataFrame, pred_col: str = "prediction", answer_col: str = "answer") -> pl.Series:
    """Per-row exact match, 1.0 or 0.0 (Float64, name ``exact_match``); null prediction → 0.0."""
    who = "exact_match"
    require_columns(df, {pred_col: (pl.String, pl.Null), answer_col: (pl.String,)}, who)
    require_no_nulls(df, answer_col, who)
    frame = pl.DataFrame({"p": as_string(df, pred_col), "a": df[answer_col]})
    equal = frame.select((normalize_exact_expr("p") == normalize_exact_expr("a")).fill_null(False)).to_series()
    return equal.cast(pl.Float64).rename("exact_match")
