"""Input checks shared by the evaluators.

Evaluators take a polars DataFrame and the names of the columns they read. A missing column, a
column of the wrong type or a malformed value raises ``ValueError`` naming the evaluator and the
column; no row is ever dropped silently. A null prediction is an error row: it is scored as wrong.
"""
from __future__ import annotations

import polars as pl

STRING_LIKE = (pl.String, pl.Null)


def require_columns(df: pl.DataFrame, columns: dict[str, tuple[type[pl.DataType], ...]], who: str) -> None:
    """Raise ``ValueError`` unless every ``columns`` name exists in ``df`` with one of the given dtypes."""
    for name, dtypes in columns.items():
        if name not in df.columns:
            raise ValueError(f"{who}: missing column {name!r} (columns: {df.columns})")
        dtype = df.schema[name]
        if not any(dtype == t or isinstance(dtype, t) for t in dtypes):
            wanted = " or ".join(t.__name__ for t in dtypes)
            raise ValueError(f"{who}: column {name!r} has dtype {dtype}, expected {wanted}")


def require_no_nulls(df: pl.DataFrame, column: str, who: str) -> None:
    """Raise ``ValueError`` if ``column`` holds a null (ground truth must be complete)."""
    n_null = df[column].null_count()
    if n_null:
        raise ValueError(f"{who}: column {column!r} has {n_null} null value(s)")


def require_rows(df: pl.DataFrame, who: str) -> None:
    """Raise ``ValueError`` on an empty frame (an aggregate over no rows is undefined)."""
    if df.height == 0:
        raise ValueError(f"{who}: no rows to score")


def as_string(df: pl.DataFrame, column: str) -> pl.Series:
    """``df[column]`` as a String series (an all-null prediction column may have dtype Null)."""
    return df[column].cast(pl.String)


def named_like(result: pl.Expr, source: pl.Expr) -> pl.Expr:
    """``result`` carrying the output name of ``source`` (when it has one)."""
    name = source.meta.output_name(raise_if_undetermined=False)
    return result.alias(name) if name else result
