"""report.html beside report.md: one report computed once, rendered twice with the same content;
the HTML page is self-contained (no fetch), its numbers right-aligned, its retention coloured."""
from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from pipeline.fixtures.synthetic_run import write_synthetic_run
from pipeline.report import write_report, writer
from pipeline.report.content import Table
from pipeline.report.render_html import shade


class Page(HTMLParser):
    """Tables (rows of cell texts), <td> attributes, and every URL-bearing attribute of a page."""

    def __init__(self):
        super().__init__()
        self.tables, self.cells, self.urls, self.tags = [], [], [], []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v is not None]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
            if tag == "td":
                self.cells.append(attrs)

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def markdown_tables(text: str) -> list[list[list[str]]]:
    """The GitHub tables of a Markdown text as rows of cell texts (the rule row left out, ** and ` dropped)."""
    tables, current = [], None
    for line in text.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            if not re.fullmatch(r"\|(---\|)+", line):
                current.append([re.sub(r"\*\*|`", "", c.strip()) for c in line.strip("|").split(" | ")])
        else:
            current = None
    return tables


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_synthetic_run(tmp_path_factory.mktemp("html") / "run", benchmarks=("vqav2", "pope", "mme", "mmvet"),
                               methods=("full", "icctp", "visionzip"), budgets=(576, 64, 32), n_samples=4)


@pytest.fixture(scope="module")
def written(run):
    """``write_report(run)``, once for the module: (report.md's path, the directories the predictions were
    scanned from, the ``Report`` that ``build_report`` computed for it)."""
    scans, built = [], []
    scan, build = writer.scan_predictions, writer.build_report
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer, "scan_predictions", lambda d: scans.append(d) or scan(d))
        patch.setattr(writer, "build_report", lambda *a, **k: built.append(build(*a, **k)) or built[-1])
        md_path = write_report(run)
    return md_path, scans, built[0]


@pytest.fixture(scope="module")
def html(run, written) -> str:
    """``report.html`` of ``run``, for the tests that only read it."""
    return (run / "report.html").read_text()


def test_one_model_rendered_twice_with_the_same_tables(run, written):
    md_path, scans, report = written
    assert len(scans) == 1  # the predictions are read once for every table
    markdown, page = md_path.read_text(), Page()
    page.feed((run / "report.html").read_text())
    md_tables = markdown_tables(markdown)
    # aggregate, vqav2, pope, mme, intervals, versus the paper, efficiency
    assert len(md_tables) == len(page.tables) == len(report.tables()) == 7
    for md, html in zip(md_tables, page.tables):
        assert [[c.strip() for c in row] for row in html] == md
    for title in ("Aggregate", "Benchmarks", "Headline with 95% intervals", "Versus the paper", "Efficiency", "Plots"):
        assert f"## {title}" in markdown and f"<h2>{title}</h2>" in (run / "report.html").read_text()


def test_html_is_self_contained_with_inlined_images(run, html):
    text = html
    page = Page()
    page.feed(text)
    assert "link" not in page.tags and all(u.startswith("data:image/png;base64,") for u in page.urls)
    assert not re.search(r"https?://", text)
    images = [u for u in page.urls]
    pngs = sorted(p.name for p in (run / "plots").glob("*.png"))
    assert len(images) == len(pngs) == 4  # accuracy, ours vs paper, retention, latency
    for uri in images:
        with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
            assert im.format == "PNG" and min(im.size) > 100


def test_numbers_right_aligned_and_retention_coloured(html):
    page = Page()
    page.feed(html)
    aggregate = page.tables[0]
    assert aggregate[0] == ["variant", "method", "budget", "Acc.", "benchmarks", "retention"]
    n_rows = len(aggregate) - 1
    cells = page.cells[:n_rows * 6]
    assert [c.get("class") for c in cells[:6]] == [None, None, "num", "num", "num", "num"]
    retention = [c for i, c in enumerate(cells) if i % 6 == 5]
    assert all(c["style"] == shade(float(c["data-v"])) for c in retention)
    assert shade(100.0) == "background:hsl(120,70%,82%)" and shade(50.0) == shade(20.0) == "background:hsl(0,70%,82%)"
    assert shade(75.0) == "background:hsl(60,70%,82%)"


def test_paper_table_keeps_its_row_order(written):
    report = written[2]
    paper = next(s for s in report.sections if s.title == "Versus the paper")
    table = next(b for b in paper.blocks if isinstance(b, Table))
    assert not table.sortable and table.right == tuple(table.frame.columns[1:])
    assert all(t.sortable for t in report.tables() if t is not table)
