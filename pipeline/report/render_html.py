"""``report.html``: a :class:`pipeline.report.content.Report` as one self-contained page.

Everything is inline (styles, the table-sorting script, images as ``data:`` URIs), so the file
opens offline and can be mailed or archived alone. Numbers are right-aligned; a click on a
column heading sorts a table by it (numbers numerically, a second click reverses); the column a
table names as ``shade`` (retention, %) is coloured from red (50% or less) to green (100% or more).
"""
from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

from pipeline.report.content import Image, Items, Report, Table, Text
from pipeline.report.tables import format_number

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem auto;max-width:1400px;padding:0 1rem;
color:#1d1d1f;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.3rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
h3{font-size:1.1rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.85rem}
th,td{border:1px solid #d0d0d0;padding:.25rem .5rem}th{background:#f3f3f3;text-align:left}
table.sortable th{cursor:pointer;user-select:none}table.sortable th:hover{background:#e6e6e6}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{background:#f3f3f3;padding:0 .2rem;border-radius:3px}
img{max-width:100%;border:1px solid #eee;margin:.4rem 0}
ul.facts{list-style:none;padding:0}ul.facts li{margin:.1rem 0}
div.scroll{overflow-x:auto}td,th{white-space:nowrap}
"""

# sorts a table.sortable by the clicked column: cells' data-v (numbers) or text
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col], v = cell.getAttribute("data-v");
        return v === null ? cell.textContent : (v === "" ? NaN : parseFloat(v));
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), c;
        if (typeof x === "number" && typeof y === "number") {
          if (isNaN(x) || isNaN(y)) { return isNaN(x) - isNaN(y); }
          c = x - y;
        } else { c = String(x).localeCompare(String(y)); }
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def inline(text: str) -> str:
    """Escape ``text`` and turn its ```code```, ``**bold**`` and ``[link](href)`` marks into tags."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\[([^\]]+)\]\(([^)\s\"]+)\)", r'<a href="\2">\1</a>', out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def shade(value: float) -> str:
    """Background for a retention percentage: red at <= 50, yellow at 75, green at >= 100."""
    hue = max(0.0, min(1.0, (value - 50.0) / 50.0)) * 120.0
    return f"background:hsl({hue:.0f},70%,82%)"


def numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def table_html(table: Table) -> str:
    frame = table.frame
    cls = ' class="sortable"' if table.sortable else ""
    head = "".join(f"<th>{inline(c)}</th>" for c in frame.columns)
    rows = []
    for row in frame.iter_rows():
        cells = []
        for col, value in zip(frame.columns, row):
            if numeric(value) or value is None and frame[col].dtype.is_numeric():
                missing = value is None or (isinstance(value, float) and math.isnan(value))
                text = format_number(value, table.digits.get(col, table.default_digits))
                style = f' style="{shade(value)}"' if col == table.shade and not missing else ""
                cells.append(f'<td class="num" data-v="{"" if missing else value!r}"{style}>{text}</td>')
            else:
                align = ' class="num"' if col in table.right else ""
                cells.append(f"<td{align}>{inline(format_number(None) if value is None else str(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def image_html(image: Image, root: Path) -> str:
    data = (Path(root) / image.path).read_bytes()
    mime = "image/png" if image.path.endswith(".png") else "image/jpeg"
    uri = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return f'<figure><img src="{uri}" alt="{html.escape(image.alt)}"></figure>'


def block_html(block, root: Path) -> str:
    if isinstance(block, Text):
        return f"<p>{inline(block.text)}</p>"
    if isinstance(block, Items):
        tag = "ol" if block.ordered else "ul"
        label = f"<p>{inline(block.label)}</p>" if block.label else ""
        return label + f"<{tag}>" + "".join(f"<li>{inline(i)}</li>" for i in block.items) + f"</{tag}>"
    if isinstance(block, Table):
        return table_html(block)
    if isinstance(block, Image):
        return image_html(block, root)
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_html(report: Report) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(report.title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{html.escape(report.title)}</h1>"]
    if report.facts:
        parts.append('<ul class="facts">' + "".join(f"<li>{html.escape(k)}: <code>{html.escape(v)}</code></li>"
                                                   for k, v in report.facts) + "</ul>")
    for section in report.sections:
        if section.title:
            parts.append(f"<h{section.level}>{inline(section.title)}</h{section.level}>")
        parts += [block_html(b, report.root) for b in section.blocks]
    parts.append(f"<script>{SORT_SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"
