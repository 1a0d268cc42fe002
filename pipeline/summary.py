"""The one-line-per-benchmark summary a run prints at the end."""
from __future__ import annotations

import polars as pl

from pipeline.report.tables import headline_metrics, ordered


def summary_lines(metrics: pl.DataFrame) -> list[str]:
    """``benchmark (metric): variant@budget value [retention%] ... | n rows, e errors`` per benchmark."""
    lines = []
    scored = metrics.filter(pl.col("metric").is_not_null())
    for (bench,), g in metrics.group_by("benchmark", maintain_order=True):
        n, n_err = g["n"].max(), g["n_errors"].max()
        if scored.filter(pl.col("benchmark") == bench).is_empty():
            lines.append(f"{bench}: not scored (no judge configured) | {n} rows, {n_err} errors")
            continue
        head = ordered(headline_metrics(scored.filter(pl.col("benchmark") == bench)))
        cells = []
        for r in head.iter_rows(named=True):
            ret = f" [{r['retention']:.1f}%]" if r["retention"] is not None and r["method"] != "full" else ""
            cells.append(f"{r['variant']}@{r['budget']} {r['percent']:.1f}{ret}")
        lines.append(f"{bench} ({head['metric'][0]}): " + "  ".join(cells) + f" | {n} rows, {n_err} errors")
    return lines
