"""The report of a run directory, ``report.md`` and ``report.html``: aggregate "Acc.", a table per
benchmark, headline values with 95% intervals, the paper's matching table beside the run's values,
evidence coverage (when predictions carry ``evidence_patches``), unscored benchmarks, efficiency per
budget, plots (``plots/*.png``) and optional kept-token heatmaps.

:func:`load_tables` reads the run once (the prediction columns it needs in one pass) and computes
every table; :func:`build_report` arranges them as a :class:`pipeline.report.content.Report`;
:func:`write_report` renders that one report twice, as Markdown and as HTML."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from pipeline.report import plots
from pipeline.report.content import Image, Items, Report, Section, Table, Text
from pipeline.report.efficiency import (
    FlopsFn,
    efficiency_table,
    mixed_modes,
    new_tokens,
    other_share,
    resolve_flops_model,
)
from pipeline.report.evidence import EVIDENCE, coverage_table
from pipeline.report.headline import point_scale, run_cards
from pipeline.report.heatmap import heatmaps_for_run
from pipeline.report.intervals import with_intervals
from pipeline.report.paper import PaperComparison, compare_with_paper, layout
from pipeline.report.render_html import render_html
from pipeline.report.render_md import render_markdown
from pipeline.report.runs import (
    PEAK_MEMORY_COLUMN,
    check_run_dir,
    model_id,
    predicted_benchmarks,
    read_metrics,
    read_run_info,
    scan_predictions,
)
from pipeline.report.tables import TABLE_KEYS, aggregate, benchmark_table, headline_metrics, scored, shown_table
from pipeline.stages.schema import TIMING_COLUMNS

RUN_FIELDS = ("git_commit", "started", "finished", "limit")
PREDICTION_COLUMNS = ("variant", "method", "budget", "error", "n_visual", "n_kept", "n_text", "tokens_equiv",
                      "budget_mode", "layer_tokens", *TIMING_COLUMNS, PEAK_MEMORY_COLUMN)
EFFICIENCY_COLUMNS = ("variant", "method", "budget", "budget_mode", "rows", "n_visual", "n_kept", "tokens_equiv",
                      "n_text", "tflops", "reduction",
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


def read_predictions(run_dir: Path) -> pl.LazyFrame | None:
    """The prediction columns a report reads, in one pass over the part files (``evidence_patches``
    and ``kept_indices`` only when the run records evidence), as a LazyFrame over the collected
    frame; None when the run has no predictions."""
    scan = scan_predictions(run_dir)
    if scan is None:
        return None
    names = scan.collect_schema().names()
    columns = [c for c in PREDICTION_COLUMNS if c in names]
    if EVIDENCE in names:
        columns += [EVIDENCE, "kept_indices"]
    return scan.select(columns).collect().lazy()


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
    coverage: pl.DataFrame | None  # evidence coverage_table; None without evidence
    paper: PaperComparison | None  # the run beside the matching paper table; None when none matches


def load_tables(run_dir: Path, flops_fn: FlopsFn | None = None) -> RunTables:
    """Read ``run_dir`` and compute its tables (``flops_fn`` replaces ``llava_flops``)."""
    run_dir = check_run_dir(Path(run_dir))
    info = read_run_info(run_dir)
    metrics = read_metrics(run_dir)
    cards = run_cards(info)
    head = headline_metrics(metrics, cards) if scored(metrics).height else None
    agg = aggregate(head) if head is not None else None
    predictions = read_predictions(run_dir)
    n_new = new_tokens(info)
    table, note, other = None, None, None
    if predictions is not None:
        table, note = efficiency_table(predictions, agg, resolve_flops_model(info), n_new, flops_fn)
        other = other_share(predictions)
    paper = compare_with_paper(head, info, cards) if head is not None else None
    return RunTables(run_dir, str(info.get("run_id", run_dir.name)), info, metrics, cards, head, agg,
                     table, note, n_new, other, coverage_table(predictions), paper)


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


def facts(info: dict) -> list[tuple[str, str]]:
    """The run facts under the title: model, commit, times, row limit."""
    out = []
    model = model_id(info)
    if model:
        out.append(("model", model))
    return out + [(k, str(info[k])) for k in RUN_FIELDS if info.get(k) is not None]


def aggregate_section(agg: pl.DataFrame) -> Section:
    return Section("Aggregate", [
        Text("Acc.: plain mean of each benchmark's headline metric (MME: perception / 2000 x 100); "
             "retention: Acc. as % of `full` over the same benchmarks."),
        Table(agg.rename({"acc": "Acc."}), {"Acc.": 2, "retention": 2}, shade="retention")])


def benchmark_sections(t: RunTables) -> list[Section]:
    """The "Benchmarks" heading and one section per scored benchmark (its metrics by variant x budget; a
    benchmark with many metrics shows the quoted ones and writes all of them to ``report_<bench>.csv``)."""
    out = [Section("Benchmarks", [Text("Values in points (accuracies in %, MME in MME points); retention: headline "
                                       "metric as % of `full`; errors: rows that failed (counted wrong).")])]
    for bench in sorted(t.head["benchmark"].unique()):
        metric = t.head.filter(pl.col("benchmark") == bench)["metric"][0]
        table = benchmark_table(t.metrics, t.head, bench, t.cards.get(bench))
        shown = shown_table(table, metric, t.cards.get(bench, bench))
        blocks = [Table(shown, {"retention": 1}, 2, shade="retention")]
        if shown.width < table.width:
            csv = f"report_{bench}.csv"
            table.write_csv(t.run_dir / csv)
            blocks.append(Text(f"All {table.width - len(TABLE_KEYS)} metrics: [{csv}]({csv})."))
        out.append(Section(f"{bench} (headline: {metric})", blocks, level=3))
    return out


def interval_section(head: pl.DataFrame, cards: dict[str, str]) -> Section:
    """Headline value per benchmark x variant x budget with its 95% Wilson interval (points)."""
    table = with_intervals(head, cards).with_columns(
        (pl.col("value") * pl.col("benchmark").map_elements(lambda b: point_scale(cards.get(b, b)),
                                                            return_dtype=pl.Float64)).alias("value"))
    return Section("Headline with 95% intervals", [
        Text("Wilson score interval of the headline over the variant's n questions (exact for per-question "
             "0/1 scores, approximate for F1 and soft VQA scores; none for MME points)."),
        Table(table.select("benchmark", "variant", "budget", "metric", "value", "low", "high", "n"),
              {"value": 1, "low": 1, "high": 1})])


def coverage_section(table: pl.DataFrame) -> Section:
    return Section("Evidence coverage", [
        Text("Over questions whose dataset records the asked object's patches (`evidence_patches`; none for "
             "an absent object): kept_fraction = mean share of those patches kept, any_kept = share of "
             "questions with at least one kept."),
        Table(table, {"kept_fraction": 3, "any_kept": 3})])


def efficiency_section(table: pl.DataFrame, note: str | None, n_new: int, other: float | None = None) -> Section:
    if note:
        blocks = [Text(f"TFLOPs not computed: {note}.")]
    else:
        blocks = [Text("TFLOPs: analytic (`icctp.flops.llava_flops`, total of vision, projector, prefill and "
                       f"{n_new} decoded tokens) at the mean kept count and median text length; reduction vs "
                       "the unpruned visual count.")]
    blocks.append(Text("Latency: median ms over rows without error (`other_ms`: the model actor's batch time outside "
                       "vision/select/prefill/decode, shared over the batch's rows); peak memory in MiB when "
                       "recorded; retention: aggregate Acc. as % of `full`."))
    if other is not None:
        blocks.append(Text(f"The model actor spent {other:.1f}% of its time outside vision/select/prefill/decode "
                           "(all variants together)."))
    blocks.append(Text("Visual tokens: `n_kept` after the last pruning layer, `tokens_equiv` averaged over the decoder "
                       "layers (equal for methods that prune before the LLM); `budget_mode` (in-LLM methods): which of "
                       "the two the budget set. TFLOPs of in-LLM methods count every layer's own visual tokens."))
    blocks += [Text(f"**Mixed budget modes.** {line}") for line in mixed_modes(table)]
    cols = [c for c in EFFICIENCY_COLUMNS if c in table.columns]
    digits = {"n_kept": 1, "tokens_equiv": 1, "n_visual": 0, "n_text": 0, "tflops": 3, "reduction": 1, "retention": 1,
              PEAK_MEMORY_COLUMN: 0, **{c: 1 for c in TIMING_COLUMNS}}
    return Section("Efficiency", blocks + [Table(table.select(cols), digits, shade="retention")] + off_budget_note(table))


def off_budget_note(table: pl.DataFrame) -> list[Text]:
    """A note naming the variants whose mean ``n_kept`` (the visual tokens that reached the language
    model) differs from their budget scaled to the image's visual tokens (``icctp.budget.scaled_budget``),
    e.g. PruMerge+'s adaptive count, VisionZip's CLS counted in, LLaVA-NeXT's newlines kept on top."""
    from icctp.budget import scaled_budget

    off = [f"{variant}@{budget}: {n_kept:.1f}"
           for variant, method, budget, n_visual, n_kept in table.select("variant", "method", "budget", "n_visual",
                                                                         "n_kept").iter_rows()
           if method != "full" and n_visual and n_kept is not None
           and abs(n_kept - scaled_budget(int(budget), max(1, round(n_visual)))) > 0.05]
    if not off:
        return []
    return [Text("Visual tokens that reached the language model differ from the budget (mean `n_kept`) for: "
                 + ", ".join(off) + ".")]


def paper_section(comp: PaperComparison, figure: str | None = None) -> Section:
    """"Versus the paper": the matching paper table in its own layout with this run's values beside
    the paper's, the notes on what is not comparable, and the ours-vs-paper plot (``figure``: its
    path relative to the run directory)."""
    frame = layout(comp)
    blocks = [Text(f"Table {comp.table} of the ICCTP paper ({comp.model}). Each cell: this run / the paper (this run "
                   "- paper), in points (MME in MME points); Acc.: mean headline over the table's benchmarks (MME "
                   "perception / 20); retention: Acc. as % of the unpruned model's. `not run`: the paper has the "
                   "cell, this run has no value for it."),
              Table(frame, right=tuple(frame.columns[1:]), sortable=False)]
    if comp.notes:
        blocks.append(Items(comp.notes, ordered=True, label="Notes:"))
    if figure:
        blocks.append(Image(figure, "ours_vs_paper"))
    return Section("Versus the paper", blocks)


def figure_blocks(paths: list[Path], root: Path) -> list[Image]:
    return [Image(p.relative_to(root).as_posix(), p.stem) for p in paths]


def build_report(run_dir: Path, *, heatmaps: int = 0, heatmap_variant: str | None = None,
                 heatmap_budget: int | None = None, flops_fn: FlopsFn | None = None) -> Report:
    """Compute the report of ``run_dir`` once (writing its plots and heatmaps as PNG files);
    :func:`write_report` renders it as Markdown and HTML."""
    t = load_tables(run_dir, flops_fn)
    run_dir = t.run_dir
    sections = []
    if t.agg is not None:
        sections.append(aggregate_section(t.agg))
    skipped = unscored(run_dir, t.metrics)
    if skipped:
        sections.append(Section(None, [Text(f"Not scored: {', '.join(skipped)}.")]))
    if t.head is not None:
        sections += benchmark_sections(t)
        sections.append(interval_section(t.head, t.cards))
    if t.paper is not None:
        scatter = None
        if t.paper.differences().height:
            scatter = plots.ours_vs_paper(t.paper.cells, run_dir / "plots" / "ours_vs_paper.png",
                                          f"This run vs the paper's Table {t.paper.table} ({t.paper.model})")
        sections.append(paper_section(t.paper, scatter.relative_to(run_dir).as_posix() if scatter else None))
    if t.coverage is not None:
        sections.append(coverage_section(t.coverage))
    if t.efficiency is not None:
        sections.append(efficiency_section(t.efficiency, t.flops_note, t.n_new, t.other_share))
    figures = run_plots(t, run_dir / "plots")
    if figures:
        sections.append(Section("Plots", figure_blocks(figures, run_dir)))
    maps = heatmaps_for_run(run_dir, heatmaps, variant=heatmap_variant, budget=heatmap_budget) if heatmaps else []
    if maps:
        sections.append(Section("Kept-token heatmaps", figure_blocks(maps, run_dir)))
    title = f"ICCTP-Eval report: {t.info.get('run_id', run_dir.name)}"
    return Report(title, facts(t.info), sections, run_dir)


def write_atomic(path: Path, text: str) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_report(run_dir: Path, *, heatmaps: int = 0, heatmap_variant: str | None = None,
                 heatmap_budget: int | None = None, flops_fn: FlopsFn | None = None) -> Path:
    """Write ``run_dir/report.md`` and ``run_dir/report.html`` (one report, two renderings), the plots
    under ``run_dir/plots`` and ``heatmaps`` kept-token heatmaps under ``run_dir/heatmaps``; return
    the Markdown path.

    ``heatmap_variant`` / ``heatmap_budget``: which rows to draw (see
    :func:`pipeline.report.heatmap.pick_rows`). ``flops_fn``: replaces
    ``icctp.flops.llava_flops`` (same signature).
    """
    report = build_report(run_dir, heatmaps=heatmaps, heatmap_variant=heatmap_variant,
                          heatmap_budget=heatmap_budget, flops_fn=flops_fn)
    write_atomic(report.root / "report.html", render_html(report))
    return write_atomic(report.root / "report.md", render_markdown(report))
