"""``report.md`` of a run directory: aggregate "Acc.", a table per benchmark, headline values with
95% intervals, evidence coverage (when predictions carry ``evidence_patches``), unscored benchmarks,
efficiency per budget, plots (``plots/*.png``) and optional kept-token heatmaps."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.report import plots
from pipeline.report.efficiency import FlopsFn, efficiency_table, new_tokens, other_share, resolve_flops_model
from pipeline.report.evidence import coverage_table
from pipeline.report.headline import point_scale, run_cards
from pipeline.report.heatmap import heatmaps_for_run
from pipeline.report.intervals import with_intervals
from pipeline.report.runs import (
    PEAK_MEMORY_COLUMN,
    check_run_dir,
    model_id,
    predicted_benchmarks,
    read_metrics,
    read_run_info,
    scan_predictions,
)
from pipeline.report.tables import (
    TABLE_KEYS,
    aggregate,
    benchmark_table,
    headline_metrics,
    scored,
    shown_table,
    to_markdown,
)
from pipeline.stages.schema import TIMING_COLUMNS

RUN_FIELDS = ("git_commit", "started", "finished", "limit")
EFFICIENCY_COLUMNS = ("variant", "method", "budget", "rows", "n_visual", "n_kept", "n_text", "tflops", "reduction",
                      *TIMING_COLUMNS, PEAK_MEMORY_COLUMN, "retention")


def unscored(run_dir: Path, metrics: pl.DataFrame) -> list[str]:
    """``"name (R rows, E errors)"`` per benchmark without a metric value (rows and errors summed
    over variants and budgets), and ``"name (no metrics)"`` for a predicted benchmark absent from
    ``metrics.parquet``."""
    have = set(scored(metrics)["benchmark"].to_list())
    counts = (metrics.filter(~pl.col("benchmark").is_in(list(have)))
              .group_by("benchmark").agg(pl.col("n").sum(), pl.col("n_errors").sum()).sort("benchmark"))
    out = [f"{b} ({n} rows, {e} errors)" for b, n, e in counts.iter_rows()]
    absent = set(predicted_benchmarks(run_dir)) - set(metrics["benchmark"].to_list())
    return out + [f"{b} (no metrics)" for b in sorted(absent)]


def header(run_dir: Path, info: dict) -> list[str]:
    lines = [f"# ICCTP-Eval report: {info.get('run_id', run_dir.name)}", ""]
    model = model_id(info)
    if model:
        lines.append(f"- model: `{model}`")
    lines += [f"- {k}: `{info[k]}`" for k in RUN_FIELDS if info.get(k) is not None]
    return lines + [""]


def interval_section(head: pl.DataFrame, cards: dict[str, str]) -> list[str]:
    """Headline value per benchmark x variant x budget with its 95% Wilson interval (points)."""
    table = with_intervals(head, cards).with_columns(
        (pl.col("value") * pl.col("benchmark").map_elements(lambda b: point_scale(cards.get(b, b)),
                                                            return_dtype=pl.Float64)).alias("value"))
    return ["## Headline with 95% intervals", "",
            "Wilson score interval of the headline over the variant's n questions (exact for per-question "
            "0/1 scores, approximate for F1 and soft VQA scores; none for MME points).", "",
            to_markdown(table.select("benchmark", "variant", "budget", "metric", "value", "low", "high", "n"),
                        {"value": 1, "low": 1, "high": 1}), ""]


def coverage_section(table: pl.DataFrame) -> list[str]:
    return ["## Evidence coverage", "",
            "Over questions whose dataset records the asked object's patches (`evidence_patches`; none for "
            "an absent object): kept_fraction = mean share of those patches kept, any_kept = share of "
            "questions with at least one kept.", "",
            to_markdown(table, {"kept_fraction": 3, "any_kept": 3}), ""]


def efficiency_section(table: pl.DataFrame, note: str | None, n_new: int, other: float | None = None) -> list[str]:
    lines = ["## Efficiency", ""]
    if note:
        lines += [f"TFLOPs not computed: {note}.", ""]
    else:
        lines += ["TFLOPs: analytic (`icctp.flops.llava_flops`, total of vision, projector, prefill and "
                  f"{n_new} decoded tokens) at the mean kept count and median text length; reduction vs "
                  "the unpruned visual count.", ""]
    lines += ["Latency: median ms over rows without error (`other_ms`: the model actor's batch time outside "
              "vision/select/prefill/decode, shared over the batch's rows); peak memory in MiB when recorded; "
              "retention: aggregate Acc. as % of `full`.", ""]
    if other is not None:
        lines += [f"The model actor spent {other:.1f}% of its time outside vision/select/prefill/decode "
                  "(all variants together).", ""]
    cols = [c for c in EFFICIENCY_COLUMNS if c in table.columns]
    digits = {"n_kept": 1, "n_visual": 0, "n_text": 0, "tflops": 3, "reduction": 1, "retention": 1,
              PEAK_MEMORY_COLUMN: 0, **{c: 1 for c in TIMING_COLUMNS}}
    return lines + [to_markdown(table.select(cols), digits), ""]


@dataclass
class RunTables:
    """Everything a report or a comparison shows of one run."""

    run_dir: Path
    label: str
    info: dict
    metrics: pl.DataFrame
    cards: dict[str, str]
    head: pl.DataFrame | None  # headline_metrics; None when nothing was scored
    agg: pl.DataFrame | None  # aggregate
    efficiency: pl.DataFrame | None  # efficiency_table; None without predictions
    flops_note: str | None
    n_new: int
    other_share: float | None  # % of the model actor's time outside its four steps


def load_tables(run_dir: Path, flops_fn: FlopsFn | None = None) -> RunTables:
    """Read ``run_dir`` and compute its tables (``flops_fn`` replaces ``llava_flops``)."""
    run_dir = check_run_dir(Path(run_dir))
    info = read_run_info(run_dir)
    metrics = read_metrics(run_dir)
    cards = run_cards(info)
    head = headline_metrics(metrics, cards) if scored(metrics).height else None
    agg = aggregate(head) if head is not None else None
    predictions = scan_predictions(run_dir)
    n_new = new_tokens(info)
    table, note, other = None, None, None
    if predictions is not None:
        table, note = efficiency_table(predictions, agg, resolve_flops_model(info), n_new, flops_fn)
        other = other_share(predictions)
    return RunTables(run_dir, str(info.get("run_id", run_dir.name)), info, metrics, cards, head, agg,
                     table, note, n_new, other)


def run_plots(tables: RunTables, out_dir: Path, accuracy: bool = True) -> list[Path]:
    """The run's plots under ``out_dir``: accuracy vs budget (unless ``accuracy`` is False),
    retention vs reduction (when a method has a retention), latency vs budget (when timings
    exist)."""
    figures = []
    if accuracy and tables.head is not None:
        figures.append(plots.accuracy_vs_budget({tables.label: tables.head}, out_dir / "accuracy_vs_budget.png"))
    eff = tables.efficiency
    if eff is not None and "retention" in eff.columns and eff["retention"].is_not_null().any():
        figures.append(plots.retention_vs_reduction(eff, out_dir / "retention_vs_reduction.png"))
    if eff is not None:
        latency = plots.latency_vs_budget(eff, out_dir / "latency_vs_budget.png")
        if latency is not None:
            figures.append(latency)
    return figures


def image_links(paths: list[Path], root: Path) -> list[str]:
    return [f"![{p.stem}]({p.relative_to(root).as_posix()})\n" for p in paths]


def write_report(run_dir: Path, *, heatmaps: int = 0, heatmap_variant: str | None = None,
                 heatmap_budget: int | None = None, flops_fn: FlopsFn | None = None) -> Path:
    """Write ``run_dir/report.md`` (and ``run_dir/plots/*.png``, plus ``heatmaps`` kept-token
    heatmaps under ``run_dir/heatmaps``); return the report path.

    ``heatmap_variant`` / ``heatmap_budget``: which rows to draw (see
    :func:`pipeline.report.heatmap.pick_rows`). ``flops_fn``: replaces
    ``icctp.flops.llava_flops`` (same signature).
    """
    t = load_tables(run_dir, flops_fn)
    run_dir = t.run_dir
    lines = header(run_dir, t.info)
    if t.agg is not None:
        lines += ["## Aggregate", "",
                  "Acc.: plain mean of each benchmark's headline metric (MME: perception / 2000 x 100); "
                  "retention: Acc. as % of `full` over the same benchmarks.", "",
                  to_markdown(t.agg.rename({"acc": "Acc."}), {"Acc.": 2, "retention": 2}), ""]
    skipped = unscored(run_dir, t.metrics)
    if skipped:
        lines += [f"Not scored: {', '.join(skipped)}.", ""]
    if t.head is not None:
        lines += ["## Benchmarks", "",
                  "Values in points (accuracies in %, MME in MME points); retention: headline metric as "
                  "% of `full`; errors: rows that failed (counted wrong).", ""]
        for bench in sorted(t.head["benchmark"].unique()):
            metric = t.head.filter(pl.col("benchmark") == bench)["metric"][0]
            table = benchmark_table(t.metrics, t.head, bench, t.cards.get(bench))
            shown = shown_table(table, metric, t.cards.get(bench, bench))
            lines += [f"### {bench} (headline: {metric})", "", to_markdown(shown, {"retention": 1}, 2), ""]
            if shown.width < table.width:
                csv = f"report_{bench}.csv"
                table.write_csv(run_dir / csv)
                lines += [f"All {table.width - len(TABLE_KEYS)} metrics: [{csv}]({csv}).", ""]
        lines += interval_section(t.head, t.cards)
    coverage = coverage_table(scan_predictions(run_dir))
    if coverage is not None:
        lines += coverage_section(coverage)
    if t.efficiency is not None:
        lines += efficiency_section(t.efficiency, t.flops_note, t.n_new, t.other_share)
    figures = run_plots(t, run_dir / "plots")
    if figures:
        lines += ["## Plots", ""] + image_links(figures, run_dir)
    maps = heatmaps_for_run(run_dir, heatmaps, variant=heatmap_variant, budget=heatmap_budget) if heatmaps else []
    if maps:
        lines += ["## Kept-token heatmaps", ""] + image_links(maps, run_dir)
    path = run_dir / "report.md"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines).rstrip() + "\n")
    os.replace(tmp, path)
    return path
