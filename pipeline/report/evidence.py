"""Evidence coverage: how much of the asked object's image region a pruning method keeps.

Benchmarks built with ground-truth evidence (the toy world: ``evidence_patches``, the raster patch
indices of the object a question asks about) let a report say *why* a method loses accuracy: the
answer's evidence was pruned away. Per method x budget, over the rows without error that have
evidence (questions about an absent object have none and are left out):

- ``kept_fraction``: mean over questions of |kept ∩ evidence| / |evidence|;
- ``any_kept``: share of questions with at least one evidence patch kept.

Kept positions are ``kept_indices`` (positions in the image's visual sequence, which for
LLaVA-1.5 are the raster patch indices); ``full`` keeps every patch.
"""
from __future__ import annotations

import polars as pl

from pipeline.report.tables import ordered

EVIDENCE = "evidence_patches"


def coverage_table(predictions: pl.LazyFrame | None) -> pl.DataFrame | None:
    """Columns variant, method, budget, questions, kept_fraction, any_kept; None when no row carries evidence."""
    if predictions is None or EVIDENCE not in predictions.collect_schema().names():
        return None
    rows = (predictions
            .filter(pl.col("error").is_null() & (pl.col(EVIDENCE).list.len() > 0)
                    & pl.col("kept_indices").is_not_null())
            .select("variant", "method", "budget", EVIDENCE, "kept_indices")
            .collect())
    if rows.is_empty():
        return None
    kept = rows.with_columns(
        (pl.col(EVIDENCE).cast(pl.List(pl.Int32)).list.set_intersection(pl.col("kept_indices").cast(pl.List(pl.Int32)))
         .list.len()
         / pl.col(EVIDENCE).list.len()).alias("fraction"))
    table = kept.group_by("variant", "method", "budget").agg(
        pl.len().alias("questions"),
        pl.col("fraction").mean().alias("kept_fraction"),
        (pl.col("fraction") > 0).mean().alias("any_kept"),
    )
    return ordered(table)
