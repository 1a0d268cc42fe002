"""The nightly trend page without a browser: what it reads (verdict records, headlines with
intervals, latest-good), what it draws (a chart per benchmark, a line per variant x budget), and
that the nightly code path and jobs/report.py --nightly rebuild it."""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from pipeline.fixtures.synthetic_nightly import write_synthetic_series
from pipeline.nightly import NightlyResult, record_night
from pipeline.report.trend import PAGE, RECORD, night_label, read_series, series_keys, trend_page

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("trend") / "nightly"
    write_synthetic_series(root, nights=4, regression=2, benchmarks=("vqav2", "mme"), methods=("full", "icctp"),
                           budgets=(576, 64, 32), n_samples=3, reports=False)
    return root


def test_every_night_records_its_verdict(series):
    records = [json.loads((d / RECORD).read_text()) for d in sorted(series.glob("nightly-*"))]
    assert [r["exit_code"] for r in records] == [0, 0, 1, 0]
    assert records[0]["baseline"] is None and records[3]["baseline"] == "nightly-20260102-030000"
    assert records[2]["problems"] == [p for p in records[2]["verdict"].split(": ", 2)[2].split("; ")]
    assert {p.split(" ")[0] for p in records[2]["problems"]} == {"vqav2/icctp@32", "mme/icctp@32"}


def test_series_reads_heads_with_intervals_and_status(series):
    nights = read_series(series)
    assert [n.status for n in nights] == ["green", "green", "red", "green"]
    assert nights[1].commit != nights[0].commit
    row = nights[0].cells[("vqav2", "icctp", 64)]
    assert row["value"] == pytest.approx(78 * (1 - 0.12 * (1 - 64 / 576)))  # night 0: sin 0 = 0, no jitter
    assert row["low"] < row["value"] < row["high"]
    assert nights[0].cells[("mme", "full", 576)]["low"] is None  # MME points: no interval
    assert series_keys(nights) == {b: [("full", 576), ("icctp", 64), ("icctp", 32)] for b in ("mme", "vqav2")}


def test_page_has_a_chart_per_benchmark_and_a_line_per_variant_budget(series):
    text = trend_page(series)
    assert len(re.findall(r'Plotly\.newPlot\(\s*"trend-', text)) == 2
    names = re.findall(r'"name":"([a-z]+@\d+)"', text)
    assert names == ["full@576", "icctp@64", "icctp@32"] * 2
    assert text.count('class="verdict green') == 3 and text.count('class="verdict red"') == 1
    assert 'class="verdict green good"' in text and "latest-good: <code>nightly-20260104-030000</code>" in text
    markup = re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.S)  # plotly.js itself names URLs it never fetches
    assert not re.search(r"""(src|href)=["']https?://""", markup) and "<link" not in markup
    assert "href=" not in text.split('<div class="strip">')[1].split("</div>")[0]  # no report written: no link
    assert night_label("nightly-20260104-030000") == "2026-01-04 03:00"


def test_failed_night_is_red_and_report_job_rebuilds_the_page(series, capsys):
    failed = series / "nightly-20260105-030000"
    record_night(series, NightlyResult(2, failed, None, "FAILED: the evaluation exited with 3"),
                 ["FAILED: the evaluation exited with 3"])
    nights = read_series(series)
    assert nights[-1].status == "red" and nights[-1].head is None
    (series / PAGE).unlink()
    spec = importlib.util.spec_from_file_location("job_report", ROOT / "jobs" / "report.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job.main(["--nightly", str(series)]) == 0
    text = (series / PAGE).read_text()
    assert "5 nights, 2 red" in text and "FAILED: the evaluation exited with 3" in text
    assert job.main([]) == 2 and job.main(["--nightly", str(series / "nope")]) == 2
    assert "give either a run directory or --nightly DIR" in capsys.readouterr().err
