"""Metric tables of a run: per benchmark (variant x budget), headline retention, aggregate "Acc.".

All inputs are ``metrics.parquet`` frames (benchmark, variant, method, budget, metric, value, n,
n_errors). Rows are keyed by ``variant`` (the manifest's label); ``method`` is the algorithm.
Retention is a percentage of the unpruned model's value on the same benchmark: the variant whose
method is ``full`` (whatever its label); when it ran at several budgets, its largest.
"""
from __future__ import annotations

import math

import polars as pl

from pipeline.report.headline import aggregate_percent, headline_metric, point_scale

FULL = "full"
TABLE_KEYS = ("variant", "method", "budget", "n", "errors", "retention")  # benchmark_table's non-metric columns
MAX_SHOWN_METRICS = 6  # a benchmark with more metrics shows its headline and quoted ones (``shown_table``)
QUOTED_METRICS = {  # card -> the metrics people quote beside the headline
    "pope": ("pooled/accuracy", "pooled/f1", "pooled/yes_ratio"),
    "mme": ("cognition",),
}


def variant_order(df: pl.DataFrame) -> list[str]:
    """The variants of ``df``: unpruned ones (method ``full``) first, then the others alphabetically."""
    pairs = df.select("variant", "method").unique()
    unpruned = sorted(pairs.filter(pl.col("method") == FULL)["variant"].to_list())
    return unpruned + sorted(set(pairs["variant"].to_list()) - set(unpruned))


def ordered(df: pl.DataFrame) -> pl.DataFrame:
    """Rows sorted by benchmark (when present), variant (unpruned first), budget descending."""
    rank = {v: i for i, v in enumerate(variant_order(df))}
    keys = ["benchmark"] if "benchmark" in df.columns else []
    return (df.with_columns(pl.col("variant").replace_strict(rank, return_dtype=pl.Int64).alias("_rank"))
            .sort([*keys, "_rank", "budget"], descending=[False] * len(keys) + [False, True])
            .drop("_rank"))


def scored(metrics: pl.DataFrame) -> pl.DataFrame:
    """The rows that carry a metric (an unscored benchmark has one row with metric null)."""
    return metrics.filter(pl.col("metric").is_not_null())


def headline_metrics(metrics: pl.DataFrame, cards: dict[str, str] | None = None) -> pl.DataFrame:
    """One row per scored benchmark x variant x budget: its headline metric, value, n, n_errors.

    ``cards``: benchmark entry -> card name, for entries that reuse a card (default: same name).

    Columns: benchmark, variant, method, budget, metric, value, n, n_errors, percent (the aggregate's
    0-100 scale), full_percent (``full``'s percent on that benchmark, null without ``full``),
    retention (value / full value x 100, null without ``full`` or when ``full`` is 0).
    """
    cards = cards or {}
    metrics = scored(metrics)
    chosen = {b: headline_metric(b, g["metric"].unique(maintain_order=True).to_list(), cards.get(b))
              for (b,), g in metrics.group_by("benchmark", maintain_order=True)}
    head = metrics.filter(pl.col("metric") == pl.col("benchmark").replace_strict(chosen))
    dup = head.group_by("benchmark", "variant", "budget").len().filter(pl.col("len") > 1)
    if dup.height:
        raise ValueError(f"metrics table has duplicate rows for {dup.drop('len').rows()}")
    head = head.with_columns(
        pl.struct("benchmark", "metric", "value")
        .map_elements(lambda r: aggregate_percent(cards.get(r["benchmark"], r["benchmark"]),
                                                  r["metric"], r["value"]),
                      return_dtype=pl.Float64)
        .alias("percent"))
    full = (head.filter(pl.col("method") == FULL)
            .sort("budget", "variant", descending=[True, False])
            .group_by("benchmark", maintain_order=True).first()
            .select("benchmark", pl.col("value").alias("full_value"),
                    pl.col("percent").alias("full_percent")))
    head = head.join(full, on="benchmark", how="left").with_columns(
        pl.when(pl.col("full_value") != 0)
        .then(pl.col("value") / pl.col("full_value") * 100.0)
        .alias("retention"))
    return ordered(head.drop("full_value"))


def aggregate(head: pl.DataFrame) -> pl.DataFrame:
    """Paper-style "Acc." per variant x budget from :func:`headline_metrics`.

    Columns: variant, method, budget, acc (plain mean of ``percent`` over the benchmarks present that have
    one: MME without perception is left out),
    benchmarks (how many), retention (acc / acc of ``full`` over the same benchmarks x 100;
    null when ``full`` is missing on any of them).
    """
    out = head.filter(pl.col("percent").is_not_null()).group_by("variant", "method", "budget").agg(
        pl.col("percent").mean().alias("acc"),
        pl.len().alias("benchmarks"),
        pl.col("full_percent").null_count().alias("_no_full"),
        pl.col("full_percent").mean().alias("_full_acc"),
    ).with_columns(
        pl.when((pl.col("_no_full") == 0) & (pl.col("_full_acc") != 0))
        .then(pl.col("acc") / pl.col("_full_acc") * 100.0)
        .alias("retention"))
    return ordered(out.drop("_no_full", "_full_acc"))


def benchmark_table(metrics: pl.DataFrame, head: pl.DataFrame, benchmark: str,
                    card: str | None = None) -> pl.DataFrame:
    """Wide table of one benchmark: variant, method, budget, one column per metric (in points), n,
    errors, retention (of the headline metric, %)."""
    rows = scored(metrics).filter(pl.col("benchmark") == benchmark).with_columns(
        pl.col("value") * point_scale(card or benchmark))
    if rows.is_empty():
        raise ValueError(f"benchmark {benchmark!r} has no metrics")
    names = rows["metric"].unique(maintain_order=True).to_list()
    wide = rows.pivot(on="metric", index=["variant", "method", "budget"], values="value").select(
        "variant", "method", "budget", *names)
    counts = rows.group_by("variant", "budget").agg(
        pl.col("n").max().alias("n"), pl.col("n_errors").max().alias("errors"))
    retention = head.filter(pl.col("benchmark") == benchmark).select("variant", "budget", "retention")
    return ordered(wide.join(counts, on=["variant", "budget"]).join(
        retention, on=["variant", "budget"], how="left"))


def shown_table(table: pl.DataFrame, headline: str, card: str) -> pl.DataFrame:
    """``benchmark_table``'s frame as a report shows it: every column when it has at most
    ``MAX_SHOWN_METRICS`` metrics, else the headline and the card's ``QUOTED_METRICS`` present."""
    metrics = [c for c in table.columns if c not in TABLE_KEYS]
    if len(metrics) <= MAX_SHOWN_METRICS:
        return table
    keep = [headline, *(m for m in QUOTED_METRICS.get(card, ()) if m != headline and m in metrics)]
    return table.select("variant", "method", "budget", *keep, "n", "errors", "retention")


def format_number(value, digits: int = 4) -> str:
    """A table cell: integers as is, floats with at most ``digits`` decimals (values below 1 keep
    at least 3 significant digits), null as an en dash."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, int):
        return str(value)
    if 0 < abs(value) < 1:
        digits = max(digits, 2 - math.floor(math.log10(abs(value))))
    text = f"{value:.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def to_markdown(df: pl.DataFrame, digits: dict[str, int] | None = None, default_digits: int = 4) -> str:
    """GitHub Markdown table of ``df``; ``digits`` sets decimals per column."""
    digits = digits or {}
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    for row in df.iter_rows():
        cells = [format_number(v, digits.get(c, default_digits)) if not isinstance(v, str) else v
                 for c, v in zip(df.columns, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
