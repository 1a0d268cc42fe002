"""Report plots (matplotlib, Agg backend, PNG): accuracy vs budget, retention vs TFLOPs
reduction (paper Fig. 4 style), measured prefill/decode latency vs budget.

Each function takes the tables of :mod:`pipeline.report.tables` / :mod:`efficiency`, writes one
PNG and returns its path.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from pipeline.report.fonts import use_cjk_font  # noqa: E402
from pipeline.report.tables import variant_order  # noqa: E402

DPI = 100
LINESTYLES = ("-", "--", ":", "-.")


def variant_colors(frame: pl.DataFrame) -> dict[str, tuple]:
    """A fixed colour per variant of ``frame`` (tab10 in :func:`variant_order`), unpruned ones black."""
    cmap = plt.get_cmap("tab10")
    unpruned = set(frame.filter(pl.col("method") == "full")["variant"].to_list())
    others = [v for v in variant_order(frame) if v not in unpruned]
    colors = {v: cmap(i % 10) for i, v in enumerate(others)}
    colors.update({v: (0.0, 0.0, 0.0, 1.0) for v in unpruned})
    return colors


def budget_axis(ax, budgets) -> None:
    """Log-2 budget axis with a tick at each budget, fewest tokens on the right."""
    budgets = sorted(set(budgets))
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("visual-token budget")


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def accuracy_vs_budget(heads: dict[str, pl.DataFrame], path: Path) -> Path:
    """One panel per benchmark: headline (percent scale) vs budget, a line per variant.

    ``heads``: run label -> :func:`pipeline.report.tables.headline_metrics` frame; several runs
    are overlaid with one line style each (the last run solid, the first dashed). A variant that
    ran at a single budget (``full``) is a point with a faint horizontal line through it.
    """
    if not heads or all(h.is_empty() for h in heads.values()):
        raise ValueError("accuracy_vs_budget: no headline metrics to plot")
    allh = pl.concat([h.select("benchmark", "variant", "method", "budget", "metric") for h in heads.values()])
    benchmarks = sorted(allh["benchmark"].unique())
    colors = variant_colors(allh)
    budgets = allh["budget"].unique().to_list()
    cols = min(3, len(benchmarks))
    rows = math.ceil(len(benchmarks) / cols)
    use_cjk_font()
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    if len(heads) > len(LINESTYLES):
        raise ValueError(f"accuracy_vs_budget overlays at most {len(LINESTYLES)} runs, got {len(heads)}")
    styles = {label: LINESTYLES[len(heads) - 1 - i] for i, label in enumerate(heads)}
    for ax, bench in zip(axes.flat, benchmarks):
        for label, head in heads.items():
            rows_b = head.filter(pl.col("benchmark") == bench)
            for method in variant_order(rows_b):
                pts = rows_b.filter(pl.col("variant") == method).sort("budget")
                name = method if len(heads) == 1 else f"{method} ({label})"
                if pts.height == 1:
                    ax.axhline(pts["percent"][0], color=colors[method], linestyle=styles[label],
                               linewidth=1.0, alpha=0.6)
                ax.plot(pts["budget"], pts["percent"], marker="o", color=colors[method],
                        linestyle=styles[label], label=name)
        metric = allh.filter(pl.col("benchmark") == bench)["metric"][0]
        ax.set_title(f"{bench} ({metric})")
        ax.set_ylabel("score (%)")
        budget_axis(ax, budgets)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(benchmarks):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)),
               bbox_to_anchor=(0.5, -0.02 - 0.03 * math.ceil(len(labels) / 6)))
    fig.suptitle("Headline metric vs visual-token budget (MME: perception as % of 2000)")
    fig.tight_layout()
    return save(fig, path)


def retention_vs_reduction(efficiency: pl.DataFrame, path: Path) -> Path:
    """Aggregate retention (% of ``full``) vs TFLOPs reduction (%), a line per variant, points
    labelled with their budget. Without a ``reduction`` column (no FLOPs model) the x axis is the
    visual-token reduction 1 - n_kept / n_visual."""
    rows = efficiency.filter(pl.col("retention").is_not_null())
    if rows.is_empty():
        raise ValueError("retention_vs_reduction: no variant has a retention vs full")
    if "reduction" in rows.columns:
        xlabel = "TFLOPs reduction (%)"
    else:
        rows = rows.with_columns(((1 - pl.col("n_kept") / pl.col("n_visual")) * 100).alias("reduction"))
        xlabel = "visual-token reduction (%)"
    colors = variant_colors(rows)
    use_cjk_font()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for method in variant_order(rows):
        pts = rows.filter(pl.col("variant") == method).sort("reduction")
        ax.plot(pts["reduction"], pts["retention"], marker="o", color=colors[method], label=method)
        for x, y, b in pts.select("reduction", "retention", "budget").iter_rows():
            ax.annotate(str(b), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("accuracy retention (% of full)")
    ax.set_title("Accuracy retention vs compute reduction")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return save(fig, path)


def latency_vs_budget(efficiency: pl.DataFrame, path: Path) -> Path | None:
    """Median prefill and decode latency (ms) vs budget, a line per variant; None when the run
    recorded neither."""
    panels = [c for c in ("prefill_ms", "decode_ms") if c in efficiency.columns]
    if not panels:
        return None
    colors = variant_colors(efficiency)
    use_cjk_font()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    for ax, col in zip(axes.flat, panels):
        for method in variant_order(efficiency):
            pts = efficiency.filter(pl.col("variant") == method).sort("budget")
            if pts.height == 1:
                ax.axhline(pts[col][0], color=colors[method], linestyle="--", linewidth=1.0, alpha=0.6)
            ax.plot(pts["budget"], pts[col], marker="o", color=colors[method], label=method)
        ax.set_title(f"{col.removesuffix('_ms')} latency (median over rows)")
        ax.set_ylabel("ms")
        budget_axis(ax, efficiency["budget"].unique().to_list())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Measured latency vs visual-token budget")
    fig.tight_layout()
    return save(fig, path)


def ours_vs_paper(cells: pl.DataFrame, path: Path, title: str) -> Path:
    """Our value vs the paper's per benchmark cell (:class:`pipeline.report.paper.PaperComparison`
    ``cells`` with both values, on the Acc. scale: MME perception / 2000 x 100), the diagonal
    y = x, one colour per paper method, one marker per budget."""
    pts = cells.filter(pl.col("ours_pct").is_not_null() & (pl.col("benchmark") != "Acc."))
    if pts.is_empty():
        raise ValueError("ours_vs_paper: no cell has both values")
    cmap = plt.get_cmap("tab10")
    methods = pts["paper_method"].unique(maintain_order=True).to_list()
    budgets = sorted(pts["budget"].unique().to_list(), reverse=True)
    markers = dict(zip(budgets, "osD^v<>p"))
    use_cjk_font()
    fig, ax = plt.subplots(figsize=(6, 5.5))
    low = min(pts["paper_pct"].min(), pts["ours_pct"].min())
    high = max(pts["paper_pct"].max(), pts["ours_pct"].max())
    pad = (high - low) * 0.05 + 0.5
    ax.plot([low - pad, high + pad], [low - pad, high + pad], color="grey", linewidth=1.0, linestyle="--",
            label="ours = paper")
    for i, method in enumerate(methods):
        for budget in budgets:
            sel = pts.filter((pl.col("paper_method") == method) & (pl.col("budget") == budget))
            if sel.height:
                ax.scatter(sel["paper_pct"], sel["ours_pct"], color=cmap(i % 10), marker=markers[budget],
                           label=f"{method} @{budget}", s=28)
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(low - pad, high + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("paper (%, MME perception / 20)")
    ax.set_ylabel("this run (%, MME perception / 20)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    return save(fig, path)
