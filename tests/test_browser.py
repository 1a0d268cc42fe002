"""The nightly trend page and a night's report.html in a real headless Chromium: no console error,
no failed or network request, the charts and series the runs call for, sortable tables, loaded
images, and screenshots that are not blank.

Needs the Debian package ``chromium`` (``scripts/setup.sh`` installs it where apt-get can run) and
the ``playwright`` Python package (dev extra); skipped, saying which is missing, without them.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import polars as pl
import pytest
from PIL import Image, ImageStat

from pipeline.fixtures.synthetic_nightly import write_synthetic_series
from pipeline.report.runs import read_metrics, read_run_info
from pipeline.report.trend import PAGE

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BENCHMARKS = ("vqav2", "pope", "mme")
METHODS = ("full", "icctp", "cls")
BUDGETS = (576, 64, 32)


def chromium() -> str | None:
    """$ICCTP_CHROMIUM, else the first of chromium / chromium-browser / google-chrome on PATH."""
    if os.environ.get("ICCTP_CHROMIUM"):
        return os.environ["ICCTP_CHROMIUM"]
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is missing: pip install -e '.[dev]'")
    path = chromium()
    if path is None:
        pytest.skip("no Chromium on PATH: apt-get install -y chromium (scripts/setup.sh does where apt-get can run)")
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("nightly") / "series"
    results = write_synthetic_series(root, nights=5, regression=3, benchmarks=BENCHMARKS, methods=METHODS,
                                     budgets=BUDGETS, n_samples=3, trend=False)  # the page once, after the last night
    assert [r.exit_code for r in results] == [0, 0, 0, 1, 0]
    return root


def open_page(browser, path: Path):
    """A page at ``path`` and the list its problems collect into: console errors, page errors,
    failed requests, and any request that is not for a local file (aborted)."""
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    page.set_default_timeout(120_000)  # a loaded CI machine takes long to parse the inlined plotly.js
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

    def only_files(route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            problems.append(f"network request: {route.request.url}")
            route.abort()

    page.route("**/*", only_files)
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems


def assert_not_blank(path: Path) -> None:
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        small = rgb.resize((rgb.width // 4, rgb.height // 4))
        colours = len(small.getcolors(maxcolors=1 << 20))
        spread = max(ImageStat.Stat(rgb).stddev)
    assert colours > 50 and spread > 20, f"{path}: {colours} colours, stddev {spread:.1f}"


def test_trend_page_in_chromium(browser, series, tmp_path):
    page, problems = open_page(browser, series / PAGE)
    page.wait_for_selector(".js-plotly-plot")
    charts = page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot'))"
                           ".map(d => [d.id, d.data.length, d.data.map(t => t.y.length)])")
    lines = pl.concat([read_metrics(d).select("benchmark", "variant", "budget")
                       for d in sorted(series.glob("nightly-*"))]).unique()
    expected = {f"trend-{b}": lines.filter(pl.col("benchmark") == b).height for b in BENCHMARKS}
    assert {c[0]: c[1] for c in charts} == expected == {f"trend-{b}": 5 for b in BENCHMARKS}  # full + 2 x 2
    assert all(n == 5 for c in charts for n in c[2])  # every line has a point per night
    strip = page.evaluate("Array.from(document.querySelectorAll('.strip .verdict'))"
                          ".map(a => [a.className, a.getAttribute('href'), a.title])")
    assert [c[0] for c in strip] == ["verdict green"] * 3 + ["verdict red", "verdict green good"]
    assert "icctp@32" in strip[3][2] and "fell" in strip[3][2]
    assert all((series / href).is_file() for _, href, _ in strip)
    point = page.locator("#trend-vqav2 .scatterlayer .trace:nth-child(5) .points path:nth-child(4)")
    point.scroll_into_view_if_needed()
    box = point.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # icctp@32 on the red night
    page.wait_for_selector("#trend-vqav2 .hoverlayer .hovertext")
    hover = page.locator("#trend-vqav2 .hoverlayer").text_content()
    commit = read_run_info(sorted(series.glob("nightly-*"))[3])["git_commit"][:12]
    assert "icctp@32" in hover and f"commit {commit} (red)" in hover and "[" in hover
    shot = tmp_path / "trend.png"
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shot))
    assert_not_blank(shot)
    assert problems == []
    page.close()


def test_a_nights_report_in_chromium(browser, series, tmp_path):
    night = sorted(series.glob("nightly-*"))[-1]
    page, problems = open_page(browser, night / "report.html")
    images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
    assert len(images) == 4 and all(done and width > 100 for done, width in images)
    budgets = "Array.from(document.querySelector('table.sortable').tBodies[0].rows).map(r => +r.cells[2].dataset.v)"
    before = page.evaluate(budgets)
    page.click("table.sortable >> nth=0 >> th:has-text('budget')")
    assert page.evaluate(budgets) == sorted(before)
    page.click("table.sortable >> nth=0 >> th:has-text('budget')")
    assert page.evaluate(budgets) == sorted(before, reverse=True)
    assert page.locator("h2", has_text="Versus the paper").count() == 1
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert_not_blank(shot)
    assert problems == []
    page.close()
