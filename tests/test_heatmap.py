"""Kept-token heatmaps: the grid drawn marks exactly the kept tokens, clusters land on their
cells, LLaVA-NeXT rows are drawn grid by grid, and the PNG is valid."""
from __future__ import annotations

import io

import numpy as np
import polars as pl
import pytest
from PIL import Image
from test_plots import assert_png

from pipeline.fixtures.synthetic_run import write_synthetic_run
from pipeline.report.heatmap import (
    GLOBAL,
    NOT_KEPT,
    cluster_grid,
    cluster_labels,
    draw_heatmap,
    heatmaps_for_run,
    kept_mask,
    next_layout,
    pick_rows,
)
from pipeline.report.runs import scan_predictions


def image(w=500, h=300) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))


def row(kept, clusters, n_visual=576, phrases=("dog", "wooden bench"), **extra) -> dict:
    return {"benchmark": "vqav2", "sample_id": "7", "variant": "icctp", "method": "icctp", "budget": len(kept),
            "question": "Is the dog on the wooden bench?", "n_visual": n_visual, "n_kept": len(kept),
            "kept_indices": list(kept), "kept_clusters": None if clusters is None else list(clusters),
            "noun_phrases": list(phrases), "center_source": "nouns", **extra}


def test_cluster_grid_places_tokens_in_raster_order():
    grid = cluster_grid([0, 25, 575], 576, [-1, 0, 1])
    assert grid.shape == (1, 24, 24)
    assert grid[0, 0, 0] == GLOBAL
    assert grid[0, 1, 1] == 0  # token 25 = row 1, column 1
    assert grid[0, 23, 23] == 1
    assert (grid != NOT_KEPT).sum() == 3


def test_kept_mask_without_clusters():
    mask = kept_mask([3, 4, 100], 576)
    assert mask.sum() == 3 and mask[0, 0, 3] and mask[0, 4, 4]


@pytest.mark.parametrize("kept,clusters,n_visual,match", [
    ([576], None, 576, "out of"),
    ([-1], None, 576, "out of"),
    ([3, 3], None, 576, "repeated"),
    ([1, 2], [0], 576, "entries"),
    ([1], None, 0, "n_visual"),
])
def test_bad_rows_are_errors(kept, clusters, n_visual, match):
    with pytest.raises(ValueError, match=match):
        cluster_grid(kept, n_visual, clusters)


def test_heatmap_marks_exactly_n_kept_cells(tmp_path):
    rng = np.random.default_rng(1)
    kept = np.sort(rng.choice(576, size=64, replace=False))
    clusters = rng.integers(-1, 2, size=64)
    r = row(kept.tolist(), clusters.tolist())
    mask = draw_heatmap(image(), r, tmp_path / "h.png")
    assert mask.sum() == r["n_kept"] == 64
    assert np.array_equal(np.flatnonzero(mask.reshape(-1)), kept)
    assert_png(tmp_path / "h.png")


def next_config():
    """A LLaVA-NeXT config with CLIP-336/14 grids (no weights needed)."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig

    vision = CLIPVisionConfig(image_size=336, patch_size=14, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=2)
    text = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                       vocab_size=100)
    return LlavaNextConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                           image_grid_pinpoints=[[336, 672], [672, 336], [672, 672]])


def test_llava_next_positions_are_drawn_on_their_grids(tmp_path):
    config = next_config()
    packed, layout = next_layout((300, 500), config)  # a wide image: one row of two crops
    assert layout == (1, 2)
    newlines = np.flatnonzero(packed < 0)
    rng = np.random.default_rng(2)
    token_positions = rng.choice(np.flatnonzero(packed >= 0), size=150, replace=False)
    kept = np.sort(np.concatenate([token_positions, newlines]))
    r = row(kept.tolist(), rng.integers(-1, 2, size=kept.size).tolist(), n_visual=len(packed))
    mask = draw_heatmap(image(500, 300), r, tmp_path / "next.png", config)
    assert mask.shape == (3, 24, 24)  # base + 2 crops
    assert mask.sum() == r["n_kept"] - len(newlines) == 150
    assert np.array_equal(np.flatnonzero(mask.reshape(-1)), np.sort(packed[token_positions]))
    w, h = assert_png(tmp_path / "next.png")
    assert w > h
    with pytest.raises(ValueError, match="model config"):
        draw_heatmap(image(500, 300), r, tmp_path / "x.png")
    with pytest.raises(ValueError, match="packs"):
        draw_heatmap(image(300, 500), r, tmp_path / "x.png", config)  # a tall image packs differently


def test_legend_labels_name_noun_phrases():
    r = row([1, 2, 3], [-1, 0, 1])
    assert cluster_labels(r, [-1, 0, 1]) == {-1: "global (CLS top-k)", 0: "“dog”", 1: "“wooden bench”"}
    assert cluster_labels(row([1], None), [-1]) == {-1: "kept"}
    assert cluster_labels(row([1], [0], phrases=(), center_source="instruction"), [0]) == {0: "instruction (no noun)"}
    with pytest.raises(ValueError, match="no noun phrase"):
        cluster_labels(row([1], [2]), [2])


def test_heatmaps_for_run_reads_images_from_input_shards(tmp_path):
    run = write_synthetic_run(tmp_path / "run", benchmarks=("vqav2", "mme"), methods=("full", "icctp"),
                              budgets=(576, 32), n_samples=3)
    paths = heatmaps_for_run(run, 2)
    assert len(paths) == 2
    assert all(p.parent == run / "heatmaps" for p in paths)
    for p in paths:
        assert_png(p)
    picked = pick_rows(scan_predictions(run), 3)
    assert picked["method"].unique().to_list() == ["icctp"]
    assert picked["budget"].unique().to_list() == [32]
    assert picked["benchmark"].to_list() == ["mme", "vqav2", "mme"]  # alternating, error rows skipped
    shard = pl.read_parquet(next((run / "inputs" / "benchmark=mme").glob("*.parquet")))
    Image.open(io.BytesIO(shard["image"][1])).verify()


def test_missing_image_is_an_error(tmp_path):
    run = write_synthetic_run(tmp_path / "run", benchmarks=("vqav2",), methods=("icctp",), budgets=(32,),
                              n_samples=2)
    shard = next((run / "inputs" / "benchmark=vqav2").glob("*.parquet"))
    pl.read_parquet(shard).head(1).write_parquet(shard)
    with pytest.raises(ValueError, match="no image"):
        heatmaps_for_run(run, 1)


def test_no_matching_rows_is_an_error(tmp_path):
    run = write_synthetic_run(tmp_path / "run", benchmarks=("vqav2",), methods=("icctp",), budgets=(32,),
                              n_samples=2)
    with pytest.raises(ValueError, match="no prediction row"):
        heatmaps_for_run(run, 1, variant="cls")
