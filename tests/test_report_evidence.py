"""Report additions: Wilson intervals on headline metrics, evidence coverage per method x budget."""
from __future__ import annotations

import polars as pl
import pytest

from pipeline.fixtures.synthetic_run import write_synthetic_run
from pipeline.report import write_report
from pipeline.report.evidence import coverage_table
from pipeline.report.intervals import wilson, with_intervals


def test_wilson_matches_hand_computed_values():
    # p = 0.5, n = 100: centre 0.5, half-width 1.96 * sqrt(0.0025 + 1.96^2/40000) / (1 + 1.96^2/100)
    assert wilson(0.5, 100) == pytest.approx((0.40383, 0.59617), abs=1e-5)
    # p = 0: low 0, high z^2 / (n + z^2)
    z2 = 1.959963984540054 ** 2
    assert wilson(0.0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert wilson(1.0, 10) == pytest.approx((1 - z2 / (10 + z2), 1.0))


def test_intervals_are_in_points_and_absent_for_mme():
    head = pl.DataFrame({"benchmark": ["vqav2", "mme"], "method": ["icctp", "icctp"], "budget": [64, 64],
                         "metric": ["accuracy", "perception"], "value": [0.5, 1400.0], "n": [100, 100]})
    out = with_intervals(head)
    assert out["low"].to_list()[0] == pytest.approx(40.383, abs=1e-3)
    assert out["high"].to_list()[0] == pytest.approx(59.617, abs=1e-3)
    assert out["low"].to_list()[1] is None and out["high"].to_list()[1] is None


def test_coverage_counts_kept_evidence_and_skips_absent_objects_and_errors():
    preds = pl.LazyFrame({
        "variant": ["icctp", "icctp", "icctp", "icctp", "cls"],
        "method": ["icctp", "icctp", "icctp", "icctp", "cls"],
        "budget": [16, 16, 16, 16, 16],
        "error": [None, None, None, "ImageError: x", None],
        "evidence_patches": [[1, 2, 3, 4], [5], [], [7], [1, 2]],
        "kept_indices": [[2, 4, 9], [6], [0], [7], [1, 2, 3]],
    }, schema_overrides={"evidence_patches": pl.List(pl.Int32), "kept_indices": pl.List(pl.Int32)})
    table = coverage_table(preds)
    assert table.rows() == [("cls", "cls", 16, 1, 1.0, 1.0), ("icctp", "icctp", 16, 2, 0.25, 0.5)]


def test_no_coverage_without_evidence_column():
    assert coverage_table(pl.LazyFrame({"method": ["cls"], "budget": [16], "error": [None],
                                        "kept_indices": [[1]]})) is None
    assert coverage_table(None) is None


def test_report_shows_intervals_and_no_coverage_without_evidence(tmp_path):
    run = write_synthetic_run(tmp_path / "run", benchmarks=("vqav2", "mme"), methods=("full", "icctp"),
                              budgets=(576, 64), n_samples=4)
    text = write_report(run).read_text()
    assert "## Headline with 95% intervals" in text
    assert "## Evidence coverage" not in text
