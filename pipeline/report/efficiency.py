"""Efficiency per variant x budget: analytic TFLOPs, measured latency, peak memory, retention.

TFLOPs come from ``icctp.flops.llava_flops(model, n_visual, n_text, n_new)["total"]`` with
``n_visual`` = mean visual tokens entering the LLM (``n_kept``), ``n_text`` = median text tokens
and ``n_new`` = the run's ``max_new_tokens``; the reduction is relative to the same call with the
unpruned visual count (median ``n_visual``); a method that merges inside the vision tower (ToMe)
also counts its reduced tower work. A method that prunes inside the LLM records the visual
tokens of every decoder layer (``layer_tokens``): its FLOPs count the per-layer means, so the
layers before its pruning layer pay for every visual token. ``tokens_equiv`` is the mean over
layers (= ``n_kept`` for methods that prune before the LLM); ``budget_mode`` says what an in-LLM
method's budget meant (``kept`` after its last pruning layer, or the ``equivalent`` layer average),
and :func:`mixed_modes` names the budgets whose rows are compared under different readings.
Latencies are medians over the rows without error, in ms; peak memory (MiB) is the maximum of the
optional ``peak_memory_mb`` column. ``other_share``: the model actor's time outside
vision/select/prefill/decode as % of its whole time, over the run.
"""
from __future__ import annotations

from collections.abc import Callable

import polars as pl

from pipeline.report.runs import PEAK_MEMORY_COLUMN, model_config, model_id
from pipeline.report.tables import ordered
from pipeline.stages.schema import TIMING_COLUMNS

FlopsFn = Callable[..., dict]
FLOPS_MODELS = ("llava-1.5-7b", "llava-1.5-13b", "llava-next-7b")
DEFAULT_NEW_TOKENS = 16


def measured(predictions: pl.LazyFrame) -> pl.DataFrame:
    """Per variant x budget (with its method): rows, n_visual (median), n_kept (mean), n_text (median), the median
    of each timing column present (ms) and peak memory (MiB) when recorded."""
    names = predictions.collect_schema().names()
    ok = predictions.filter(pl.col("error").is_null()) if "error" in names else predictions
    aggs = [pl.len().alias("rows"),
            pl.col("n_visual").median().alias("n_visual"),
            pl.col("n_kept").mean().alias("n_kept"),
            pl.col("n_text").median().alias("n_text")]
    if "tokens_equiv" in names:
        aggs.append(pl.col("tokens_equiv").mean().alias("tokens_equiv"))
    if "budget_mode" in names:
        aggs.append(pl.col("budget_mode").drop_nulls().first().alias("budget_mode"))
    aggs += [pl.col(c).median().alias(c) for c in TIMING_COLUMNS if c in names]
    if PEAK_MEMORY_COLUMN in names:
        aggs.append(pl.col(PEAK_MEMORY_COLUMN).max().alias(PEAK_MEMORY_COLUMN))
    out = ok.group_by("variant", "method", "budget").agg(aggs).collect()
    if "layer_tokens" in names:
        out = out.join(_layer_means(ok), on=["variant", "method", "budget"], how="left")
    empty = [c for c in (*TIMING_COLUMNS, PEAK_MEMORY_COLUMN)
             if c in out.columns and out[c].null_count() == out.height]
    return ordered(out.drop(empty))


def _layer_means(rows: pl.LazyFrame) -> pl.DataFrame:
    """Per variant x budget: the mean visual tokens of each decoder layer (``layer_tokens``, in-LLM rows)."""
    keys = ["variant", "method", "budget"]
    return (rows.filter(pl.col("layer_tokens").is_not_null())
            .select(*keys, "layer_tokens", pl.int_ranges(pl.col("layer_tokens").list.len()).alias("layer"))
            .explode("layer_tokens", "layer")
            .group_by(*keys, "layer").agg(pl.col("layer_tokens").cast(pl.Float64).mean())
            .sort("layer").group_by(*keys).agg(pl.col("layer_tokens")).collect())


def mixed_modes(table: pl.DataFrame) -> list[str]:
    """One line per budget whose pruned rows read the budget differently: in-LLM methods under both
    modes, or an in-LLM method in ``kept`` mode beside methods whose budget is an average over the
    layers (those that prune before the LLM, or in-LLM ones in ``equivalent`` mode)."""
    if "budget_mode" not in table.columns:
        return []
    lines = []
    for (budget,), group in table.filter(pl.col("method") != "full").group_by("budget", maintain_order=True):
        modes = {v: m for v, m in group.select("variant", "budget_mode").iter_rows()}
        kept = sorted(v for v, m in modes.items() if m == "kept")
        average = sorted(v for v, m in modes.items() if m != "kept")
        if kept and average:
            lines.append(f"Budget {budget} compares methods under different budget modes: "
                         f"{', '.join(kept)} keep {budget} after their last pruning layer (more on average, "
                         f"see tokens_equiv), {', '.join(average)} average {budget} over the layers.")
    return lines


def other_share(predictions: pl.LazyFrame) -> float | None:
    """% of the model actor's time spent outside vision/select/prefill/decode (``other_ms``), over
    the rows without error of the whole run (every variant shares a batch's ``other_ms``); None
    when the run records no ``other_ms``."""
    names = predictions.collect_schema().names()
    if "other_ms" not in names:
        return None
    ok = predictions.filter(pl.col("error").is_null())
    timings = [c for c in TIMING_COLUMNS if c in names]
    sums = ok.select([pl.col(c).fill_null(0.0).sum() for c in timings]).collect().row(0, named=True)
    total = sum(sums.values())
    return 100.0 * sums["other_ms"] / total if total else None


def flops_model(run_info: dict) -> str | None:
    """The ``llava_flops`` model name for the run's model id, or None when it is not one of
    :data:`FLOPS_MODELS` (e.g. a tiny fixture model)."""
    ident = model_id(run_info)
    if ident is None:
        return None
    low = ident.lower()
    if "next" in low or "1.6" in low:
        return "llava-next-7b" if "7b" in low else None
    if "13b" in low:
        return "llava-1.5-13b"
    if "7b" in low:
        return "llava-1.5-7b"
    return None


def new_tokens(run_info: dict) -> int:
    """``generation.max_new_tokens`` of the run's manifest (16 without ``run.json``); benchmark
    entries may set their own limit, the FLOPs estimate uses the manifest's."""
    return run_info["manifest"]["generation"]["max_new_tokens"] if run_info else DEFAULT_NEW_TOKENS


def default_flops_fn() -> FlopsFn:
    from icctp.flops import llava_flops

    return llava_flops


def merging_vision_change(model, method: str, budget: int) -> int:
    """FLOPs a method that merges inside the vision tower (``merging_encoder``: ToMe) saves on it, as a
    negative number (0 for every other method): ``icctp.flops.merged_vision_flops`` on the schedule the
    adapter runs minus the stock tower's count."""
    from icctp.budget import scaled_budget
    from icctp.flops import llava_shape, merged_vision_flops, vision_flops
    from pipeline.methods import METHODS
    from pipeline.model.tome import merge_rounds

    if method not in METHODS or "merging_encoder" not in METHODS[method].needs:
        return 0
    vision = llava_shape(model).vision
    schedule = merge_rounds(vision.layers, vision.patches + 1, scaled_budget(budget, vision.patches))
    return (merged_vision_flops(vision, schedule, vision.passes) - vision_flops(vision, vision.passes))


def with_flops(table: pl.DataFrame, model, n_new: int, flops_fn: FlopsFn) -> pl.DataFrame:
    """Add ``tflops`` (total, 1e12 FLOPs) and ``reduction`` (% below the unpruned count)."""
    tflops, reduction = [], []
    layers = table["layer_tokens"] if "layer_tokens" in table.columns else [None] * table.height
    rows = table.select("n_visual", "n_kept", "n_text", "method", "budget").iter_rows()
    for (n_visual, n_kept, n_text, method, budget), per_layer in zip(rows, layers):
        if per_layer is not None:
            pruned = flops_fn(model, n_visual=round(n_visual), n_text=round(n_text), n_new=n_new,
                              layer_tokens=[round(t) for t in per_layer])["total"]
        else:
            pruned = flops_fn(model, n_visual=round(n_kept), n_text=round(n_text), n_new=n_new)["total"]
        pruned += merging_vision_change(model, method, budget)
        full = flops_fn(model, n_visual=round(n_visual), n_text=round(n_text), n_new=n_new)["total"]
        tflops.append(pruned / 1e12)
        reduction.append((1.0 - pruned / full) * 100.0)
    return table.with_columns(pl.Series("tflops", tflops, dtype=pl.Float64),
                              pl.Series("reduction", reduction, dtype=pl.Float64))


def efficiency_table(predictions: pl.LazyFrame, aggregate: pl.DataFrame | None, model,
                     n_new: int, flops_fn: FlopsFn | None = None) -> tuple[pl.DataFrame, str | None]:
    """The efficiency table and, when TFLOPs could not be computed, the reason.

    ``model``: a ``llava_flops`` model name or config (None: no TFLOPs). ``aggregate``: the
    :func:`pipeline.report.tables.aggregate` frame whose ``retention`` is joined in.
    """
    table = measured(predictions)
    note = None
    if model is None:
        note = "the run's model is neither one of " + ", ".join(FLOPS_MODELS) + " nor a local model directory"
    else:
        try:
            table = with_flops(table, model, n_new, flops_fn or default_flops_fn())
        except (TypeError, ValueError, KeyError) as exc:
            note = f"llava_flops rejected the model ({type(exc).__name__}: {exc})"
    if aggregate is not None:
        table = table.join(aggregate.select("variant", "budget", "retention"),
                           on=["variant", "budget"], how="left")
    return ordered(table), note


def resolve_flops_model(run_info: dict):
    """What to pass to ``llava_flops`` for this run: the transformers config of the run's model
    when it can be read locally (a local directory, a fixture, the HF cache), else the known model
    name its id matches, else None."""
    return model_config(run_info) or flops_model(run_info)
