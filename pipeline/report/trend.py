"""The trend page of a nightly series, ``RUNS/index.html``: every benchmark's headline per variant x
budget over the nights, a verdict strip, the ``latest-good`` night, links to each night's report.

A night is a ``nightly-*`` run directory under the series root (``pipeline.nightly``). Its verdict
comes from ``nightly.json`` (written by :func:`pipeline.nightly.finish_night`: green, regression
with the failing checks, or a failed evaluation); a night without one is shown as unknown. Charts
are plotly figures (one per benchmark, one line per variant x budget, hover: value, 95% interval,
the night's commit), with plotly.js inlined once, so the page is a single file that opens offline.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
from plotly.offline import get_plotlyjs

from pipeline.report.headline import point_scale, run_cards
from pipeline.report.intervals import with_intervals
from pipeline.report.render_html import STYLE
from pipeline.report.runs import read_metrics, read_run_info
from pipeline.report.tables import headline_metrics, scored, variant_order

NIGHT_PREFIX = "nightly-"
RECORD = "nightly.json"
POINTER = "latest-good"
PAGE = "index.html"
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf")
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")

TREND_STYLE = """
.strip{display:flex;flex-wrap:wrap;gap:3px;margin:.6rem 0 1rem}
.verdict{display:block;min-width:2.2rem;padding:.3rem .35rem;border-radius:3px;font-size:.72rem;text-align:center;
color:#fff;text-decoration:none}
.verdict.green{background:#2e9e44}.verdict.red{background:#c9302c}.verdict.unknown{background:#999}
.verdict.good{outline:3px solid #f0b400;outline-offset:1px}
.chart{margin-bottom:1.2rem}td.checks{white-space:normal;max-width:70rem}
"""


@dataclass
class Night:
    """One night of the series: its run directory, verdict and headline table (points, with intervals)."""

    name: str
    run_dir: Path
    commit: str | None
    status: str  # green | red | unknown
    verdict: str
    problems: list[str] = field(default_factory=list)
    head: pl.DataFrame | None = None  # benchmark, variant, method, budget, metric, value, low, high (points)

    def __post_init__(self):
        rows = [] if self.head is None else self.head.iter_rows(named=True)
        self.cells = {(r["benchmark"], r["variant"], r["budget"]): r for r in rows}


def night_head(run_dir: Path) -> pl.DataFrame | None:
    """Headline per benchmark x variant x budget in points with its 95% interval; None without metrics."""
    if not (run_dir / "metrics.parquet").is_file():
        return None
    metrics = read_metrics(run_dir)
    if not scored(metrics).height:
        return None
    cards = run_cards(read_run_info(run_dir))
    head = with_intervals(headline_metrics(metrics, cards), cards)
    scale = pl.col("benchmark").map_elements(lambda b: point_scale(cards.get(b, b)), return_dtype=pl.Float64)
    return head.with_columns(pl.col("value") * scale).select(
        "benchmark", "variant", "method", "budget", "metric", "value", "low", "high")


def read_night(run_dir: Path) -> Night:
    run_dir = Path(run_dir)
    info = read_run_info(run_dir) if (run_dir / "run.json").is_file() else {}
    record = run_dir / RECORD
    if record.is_file():
        data = json.loads(record.read_text())
        status = "green" if data["exit_code"] == 0 else "red"
        verdict, problems = data["verdict"], list(data.get("problems") or [])
    else:
        status, verdict, problems = "unknown", "no verdict recorded", []
    return Night(run_dir.name, run_dir, info.get("git_commit"), status, verdict, problems, night_head(run_dir))


def read_series(root: Path) -> list[Night]:
    """The nights under ``root``, oldest first (directory names carry the UTC time)."""
    dirs = sorted(p for p in Path(root).glob(f"{NIGHT_PREFIX}*") if p.is_dir() and not p.is_symlink())
    return [read_night(d) for d in dirs]


def latest_good_name(root: Path) -> str | None:
    pointer = Path(root) / POINTER
    return Path(os.readlink(pointer)).name if pointer.is_symlink() else None


def series_keys(nights: list[Night]) -> dict[str, list[tuple[str, int]]]:
    """Benchmark -> its (variant, budget) lines over all nights (unpruned first, budgets descending)."""
    heads = [n.head for n in nights if n.head is not None]
    if not heads:
        return {}
    allh = pl.concat(heads)
    out = {}
    for bench in sorted(allh["benchmark"].unique()):
        rows = allh.filter(pl.col("benchmark") == bench)
        order = {v: i for i, v in enumerate(variant_order(rows))}
        pairs = rows.select("variant", "budget").unique().rows()
        out[bench] = sorted(pairs, key=lambda p: (order[p[0]], -p[1]))
    return out


def interval_text(low, high) -> str:
    return "no interval" if low is None or high is None else f"[{low:.2f}, {high:.2f}]"


def night_label(name: str) -> str:
    """``nightly-20260101-030000`` -> ``2026-01-01 03:00``."""
    stamp = name.removeprefix(NIGHT_PREFIX)
    if len(stamp) == 15 and stamp[8] == "-" and stamp.replace("-", "").isdigit():
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}"
    return stamp


def trend_figure(bench: str, lines: list[tuple[str, int]], nights: list[Night], good: str | None) -> go.Figure:
    """One benchmark's headline over the nights: a trace per (variant, budget), colour per variant,
    dash per budget; the latest-good night marked with a vertical line."""
    x = [night_label(n.name) for n in nights]
    variants = list(dict.fromkeys(v for v, _ in lines))
    budgets = sorted({b for _, b in lines}, reverse=True)
    fig = go.Figure()
    metric = None
    for variant, budget in lines:
        ys, info = [], []
        for night in nights:
            row = night.cells.get((bench, variant, budget))
            metric = metric or (row and row["metric"])
            ys.append(None if row is None else row["value"])
            info.append(["" if row is None else interval_text(row["low"], row["high"]),
                         (night.commit or "unknown")[:12], night.status])
        fig.add_trace(go.Scatter(
            x=x, y=ys, customdata=info, mode="lines+markers", name=f"{variant}@{budget}",
            line={"color": COLORS[variants.index(variant) % len(COLORS)],
                  "dash": DASHES[budgets.index(budget) % len(DASHES)]},
            hovertemplate="%{fullData.name}<br>night %{x}<br>%{y:.2f} %{customdata[0]}<br>"
                          "commit %{customdata[1]} (%{customdata[2]})<extra></extra>"))
    for night, at in zip(nights, x):
        if night.status == "red":
            fig.add_shape(type="line", xref="x", yref="paper", x0=at, x1=at, y0=0, y1=1, layer="below",
                          line={"color": "rgba(201,48,44,0.25)", "width": 14})
    if good is not None:
        mark = night_label(good)
        fig.add_shape(type="line", xref="x", yref="paper", x0=mark, x1=mark, y0=0, y1=1,
                      line={"color": "#f0b400", "width": 2, "dash": "dot"})
        fig.add_annotation(x=mark, y=1, xref="x", yref="paper", text="latest-good", showarrow=False,
                           yanchor="bottom", font={"color": "#a07800"})
    fig.update_layout(title=f"{bench} ({metric})", template="plotly_white", height=420,
                      margin={"l": 50, "r": 20, "t": 50, "b": 40}, xaxis={"type": "category", "title": "night (UTC)"},
                      yaxis={"title": "points"}, legend={"font": {"size": 10}})
    return fig


def link(target: Path, root: Path, text: str) -> str:
    if not target.is_file():
        return ""
    return f'<a href="{html.escape(target.relative_to(root).as_posix())}">{text}</a>'


def strip_html(nights: list[Night], root: Path, good: str | None) -> str:
    cells = []
    for n in nights:
        cls = f"verdict {n.status}" + (" good" if n.name == good else "")
        tip = n.verdict if not n.problems else n.verdict.split(":")[0] + ": " + "; ".join(n.problems)
        report = n.run_dir / "report.html"
        href = f' href="{html.escape(report.relative_to(root).as_posix())}"' if report.is_file() else ""
        cells.append(f'<a class="{cls}"{href} title="{html.escape(n.name + " " + tip)}">'
                     f"{html.escape(night_label(n.name)[5:10])}</a>")
    return '<div class="strip">' + "".join(cells) + "</div>"


def nights_table(nights: list[Night], root: Path, good: str | None) -> str:
    rows = []
    for n in reversed(nights):
        checks = "".join(f"<li>{html.escape(p)}</li>" for p in n.problems)
        verdict = html.escape(n.verdict.split(":")[0]) + (" (latest-good)" if n.name == good else "")
        links = " ".join(x for x in (link(n.run_dir / "report.html", root, "report"),
                                     link(n.run_dir / "compare" / "compare.md", root, "compare")) if x)
        rows.append(f'<tr><td>{html.escape(n.name)}</td><td><code>{html.escape((n.commit or "")[:12])}</code></td>'
                    f'<td class="{n.status}">{verdict}</td><td class="checks"><ul>{checks}</ul></td>'
                    f"<td>{links}</td></tr>")
    return ("<table><thead><tr><th>night</th><th>commit</th><th>verdict</th><th>failing checks</th><th>links</th>"
            f"</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def trend_page(root: Path) -> str:
    """The HTML of the series' trend page."""
    root = Path(root)
    nights = read_series(root)
    good = latest_good_name(root)
    keys = series_keys(nights)
    red = sum(n.status == "red" for n in nights)
    title = f"Nightly series: {root.resolve().name}"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{STYLE}{TREND_STYLE}</style>",
             f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>',
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(nights)} nights, {red} red; latest-good: <code>{html.escape(good or 'none')}</code>. "
             "Each box is a night (MM-DD; green: passed, red: regression or failed evaluation, outlined: "
             "latest-good); click it for the night's report, hover for its verdict.</p>",
             strip_html(nights, root, good)]
    for bench, lines in keys.items():
        fig = trend_figure(bench, lines, nights, good)
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"trend-{bench}",
                          config={"displaylogo": False})
        parts.append(f'<div class="chart">{div}</div>')
    parts += ["<h2>Nights</h2>", f'<div class="scroll">{nights_table(nights, root, good)}</div>', "</body></html>"]
    return "\n".join(parts) + "\n"


def write_trend_page(root: Path) -> Path:
    """Write ``root/index.html`` (atomically) and return its path."""
    root = Path(root)
    path = root / PAGE
    tmp = root / f".{PAGE}.tmp"
    tmp.write_text(trend_page(root))
    os.replace(tmp, path)
    return path
