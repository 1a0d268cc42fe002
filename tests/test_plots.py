"""Every report plot is a valid PNG of sensible size, drawn from real report tables."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from pipeline.fixtures.synthetic_run import write_synthetic_run
from pipeline.report import plots
from pipeline.report.writer import load_tables

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path: Path, min_side: int = 300, max_side: int = 4000) -> tuple[int, int]:
    """Assert ``path`` is a PNG (signature and a full decode) with both sides in range."""
    path = Path(path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    with Image.open(path) as im:
        assert im.format == "PNG"
        im.load()
        w, h = im.size
    assert min_side <= w <= max_side and min_side <= h <= max_side, f"{path}: {w}x{h}"
    return w, h


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    run = write_synthetic_run(tmp_path_factory.mktemp("runs") / "run1",
                              benchmarks=("vqav2", "gqa", "pope", "mme"), methods=("full", "icctp", "cls"),
                              budgets=(576, 192, 64, 32), n_samples=4)
    return load_tables(run)


def test_accuracy_vs_budget_png(tables, tmp_path):
    path = plots.accuracy_vs_budget({"run1": tables.head}, tmp_path / "acc.png")
    w, h = assert_png(path)
    assert w > h  # 4 panels laid out in rows of 3


def test_accuracy_vs_budget_overlays_runs(tables, tmp_path):
    path = plots.accuracy_vs_budget({"base": tables.head, "cand": tables.head}, tmp_path / "acc2.png")
    assert_png(path)


def test_accuracy_vs_budget_rejects_empty(tmp_path):
    with pytest.raises(ValueError, match="no headline"):
        plots.accuracy_vs_budget({}, tmp_path / "x.png")


def test_retention_vs_tflops_reduction_png(tables, tmp_path):
    assert "reduction" in tables.efficiency.columns
    assert_png(plots.retention_vs_reduction(tables.efficiency, tmp_path / "ret.png"))


def test_retention_falls_back_to_token_reduction_without_flops(tables, tmp_path):
    eff = tables.efficiency.drop("tflops", "reduction")
    assert_png(plots.retention_vs_reduction(eff, tmp_path / "ret_tokens.png"))


def test_latency_png_and_none_without_timings(tables, tmp_path):
    assert_png(plots.latency_vs_budget(tables.efficiency, tmp_path / "lat.png"))
    assert plots.latency_vs_budget(tables.efficiency.drop("prefill_ms", "decode_ms"), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_variant_colors_are_distinct_and_unpruned_black():
    frame = pl.DataFrame({"variant": ["icctp", "base", "cls", "random"], "method": ["icctp", "full", "cls", "random"]})
    colors = plots.variant_colors(frame)
    assert colors["base"] == (0.0, 0.0, 0.0, 1.0)
    assert len({colors[m] for m in ("icctp", "cls", "random", "base")}) == 4


def test_retention_plot_needs_a_retention(tables, tmp_path):
    eff = tables.efficiency.with_columns(pl.lit(None, pl.Float64).alias("retention"))
    with pytest.raises(ValueError, match="retention"):
        plots.retention_vs_reduction(eff, tmp_path / "x.png")
