"""95% Wilson score intervals on each benchmark's headline metric, per method x budget.

The headline value ``p`` (a fraction in [0, 1]) over its ``n`` questions is treated as a
proportion: the interval is the Wilson score interval of ``p·n`` successes in ``n`` trials. This is
exact for per-question 0/1 scores (exact match, accuracy, VQA accuracy when the ten answers agree,
as in the toy world) and an approximation for soft VQA scores and F1 (POPE's mean F1). MME's
scores are points, not fractions: no interval. It lets a reader tell a real gap from noise; two
intervals that overlap do not by themselves show that there is none.
"""
from __future__ import annotations

import math

import polars as pl

from pipeline.report.headline import MME, point_scale

Z95 = 1.959963984540054


def wilson(p: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (low, high) of a proportion ``p`` observed over ``n`` trials."""
    if n <= 0:
        return math.nan, math.nan
    p = min(max(p, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if p == 0.0 else max(0.0, centre - half)  # exact bounds where rounding would leave ~1e-17
    high = 1.0 if p == 1.0 else min(1.0, centre + half)
    return low, high


def with_intervals(head: pl.DataFrame, cards: dict[str, str] | None = None) -> pl.DataFrame:
    """``head`` (:func:`pipeline.report.tables.headline_metrics`) plus ``low``/``high`` in points
    (null for MME); ``n`` counts every row of the variant, errors included (they score as wrong)."""
    cards = cards or {}
    lows, highs = [], []
    for bench, value, n in head.select("benchmark", "value", "n").iter_rows():
        card = cards.get(bench, bench)
        if card == MME or value is None or n is None:
            lows.append(None)
            highs.append(None)
            continue
        low, high = wilson(value, n)
        lows.append(low * point_scale(card))
        highs.append(high * point_scale(card))
    return head.with_columns(pl.Series("low", lows, pl.Float64), pl.Series("high", highs, pl.Float64))
