"""Kept-token heatmaps (paper Fig. 1/3 style): the image with its 24x24 patch grid, pruned
patches dimmed, kept patches tinted by ICCTP cluster (-1 = global preselection, j = noun phrase
j), noun phrases in the legend.

LLaVA-1.5: visual token i is cell (i // 24, i % 24) of the one grid, and the image is shown as the
CLIP processor sees it (shortest side resized, centre-cropped square). LLaVA-NeXT: ``kept_indices``
are positions in the packed sequence (base grid, then the unpadded crop map with a newline token
ending each row, :func:`pipeline.model.llava_next.packed_index`); each position is mapped back to
its grid (base, crop r,c) and cell with the run's model config, newline tokens are left out of the
grids, and each grid is drawn on its view (base: the square view; crops: tiles of the image
resized with its aspect ratio kept and centred in the crop layout, as anyres does).
"""
from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.report.fonts import use_cjk_font  # noqa: E402
from pipeline.report.runs import input_files, model_config, read_run_info, scan_predictions  # noqa: E402
from pipeline.stages.shard_images import sample_images  # noqa: E402

SIDE = 24
TOKENS_PER_GRID = SIDE * SIDE
NOT_KEPT = -2
GLOBAL = -1
PIXELS = 336
DPI = 100
ROW_COLUMNS = ("benchmark", "sample_id", "variant", "method", "budget", "question", "n_visual", "n_kept",
               "kept_indices", "kept_clusters", "noun_phrases", "center_source")


def cluster_grid(kept_indices, n_visual: int, kept_clusters=None) -> np.ndarray:
    """int64 (grids, 24, 24): NOT_KEPT (-2) for pruned tokens, else the token's cluster
    (-1 = global preselection, j >= 0 = noun phrase j); without clusters every kept cell is -1.

    Raises ValueError on an index outside [0, n_visual), a repeated index, or clusters not
    aligned with the indices.
    """
    kept = np.asarray(kept_indices, dtype=np.int64)
    if n_visual < 1:
        raise ValueError(f"n_visual must be >= 1, got {n_visual}")
    if kept.size and (kept.min() < 0 or kept.max() >= n_visual):
        raise ValueError(f"kept index out of [0, {n_visual}): {kept.min()}..{kept.max()}")
    if np.unique(kept).size != kept.size:
        raise ValueError("kept_indices has repeated indices")
    if kept_clusters is None:
        clusters = np.full(kept.size, GLOBAL, dtype=np.int64)
    else:
        clusters = np.asarray(kept_clusters, dtype=np.int64)
        if clusters.shape != kept.shape:
            raise ValueError(f"kept_clusters has {clusters.size} entries for {kept.size} kept indices")
    grids = math.ceil(n_visual / TOKENS_PER_GRID)
    flat = np.full(grids * TOKENS_PER_GRID, NOT_KEPT, dtype=np.int64)
    flat[kept] = clusters
    return flat.reshape(grids, SIDE, SIDE)


def kept_mask(kept_indices, n_visual: int) -> np.ndarray:
    """bool (grids, 24, 24): True where the token was kept."""
    return cluster_grid(kept_indices, n_visual) != NOT_KEPT


def square_view(image: Image.Image) -> Image.Image:
    """The image as the CLIP processor sees it: shortest side to 336, centre-cropped square."""
    w, h = image.size
    scale = PIXELS / min(w, h)
    nw, nh = max(PIXELS, round(w * scale)), max(PIXELS, round(h * scale))
    image = image.convert("RGB").resize((nw, nh), Image.BICUBIC)
    left, top = (nw - PIXELS) // 2, (nh - PIXELS) // 2
    return image.crop((left, top, left + PIXELS, top + PIXELS))


def grid_views(image: Image.Image, layout: tuple[int, int] | None = None) -> list[tuple[str, Image.Image]]:
    """(title, 336x336 image) per grid: the square view, then with ``layout`` = (rows, cols) of
    LLaVA-NeXT crops each crop in raster order."""
    if layout is None:
        return [("image", square_view(image))]
    rows, cols = layout
    image = image.convert("RGB")
    target_w, target_h = cols * PIXELS, rows * PIXELS
    scale = min(target_w / image.width, target_h / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    canvas = Image.new("RGB", (target_w, target_h))
    canvas.paste(image.resize(size, Image.BICUBIC), ((target_w - size[0]) // 2, (target_h - size[1]) // 2))
    views = [("base", square_view(image))]
    for r in range(rows):
        for c in range(cols):
            box = (c * PIXELS, r * PIXELS, (c + 1) * PIXELS, (r + 1) * PIXELS)
            views.append((f"crop row {r + 1}, col {c + 1}", canvas.crop(box)))
    return views


def next_layout(image_size: tuple[int, int], config) -> tuple[np.ndarray, tuple[int, int]]:
    """LLaVA-NeXT packing of an image of ``image_size`` = (height, width): the packed index
    (n_visual,) into the flattened grid tokens (-1 = newline) and the crop layout (rows, cols)."""
    from pipeline.model import compat
    from pipeline.model.llava_next import packed_index

    grid_shape, _ = compat.anyres_helpers()
    rows, cols = grid_shape(list(image_size), config.image_grid_pinpoints, config.vision_config.image_size)
    return packed_index(image_size, config).numpy(), (int(rows), int(cols))


def grid_tokens(row: dict, packed: np.ndarray | None = None):
    """(token indices into the flattened grids, aligned clusters or None, number of grid tokens,
    kept newline tokens) of a prediction row; ``packed`` maps LLaVA-NeXT positions to tokens."""
    kept = np.asarray(row["kept_indices"], dtype=np.int64)
    clusters = None if row.get("kept_clusters") is None else np.asarray(row["kept_clusters"], dtype=np.int64)
    if packed is None:
        if row["n_visual"] > TOKENS_PER_GRID:
            raise ValueError(f"row {row.get('sample_id')!r} has {row['n_visual']} visual tokens: "
                             "a LLaVA-NeXT row needs the model config to place them")
        return kept, clusters, row["n_visual"], 0
    if len(packed) != row["n_visual"]:
        raise ValueError(f"row {row.get('sample_id')!r}: n_visual {row['n_visual']} but the model packs "
                         f"{len(packed)} positions for this image")
    if kept.size and (kept.min() < 0 or kept.max() >= len(packed)):
        raise ValueError(f"kept index out of [0, {len(packed)}): {kept.min()}..{kept.max()}")
    tokens = packed[kept]
    is_token = tokens >= 0
    if clusters is not None:
        if clusters.shape != kept.shape:
            raise ValueError(f"kept_clusters has {clusters.size} entries for {kept.size} kept indices")
        clusters = clusters[is_token]
    n_tokens = int(packed.max()) // TOKENS_PER_GRID * TOKENS_PER_GRID + TOKENS_PER_GRID
    return tokens[is_token], clusters, n_tokens, int((~is_token).sum())


def cluster_colors(n_clusters: int) -> dict[int, tuple]:
    """RGBA per cluster id: global preselection white, noun phrases tab10/tab20."""
    cmap = plt.get_cmap("tab10" if n_clusters <= 10 else "tab20")
    colors = {GLOBAL: (1.0, 1.0, 1.0, 1.0)}
    colors.update({j: cmap(j % cmap.N) for j in range(n_clusters)})
    return colors


def cluster_labels(row: dict, ids) -> dict[int, str]:
    """Legend text per cluster id present."""
    phrases = list(row.get("noun_phrases") or [])
    labels = {}
    for j in sorted(ids):
        if j == GLOBAL:
            labels[j] = "global (CLS top-k)" if row.get("kept_clusters") is not None else "kept"
        elif j < len(phrases):
            labels[j] = f"“{phrases[j]}”"
        elif row.get("center_source") == "instruction":
            labels[j] = "instruction (no noun)"
        else:
            raise ValueError(f"cluster {j} has no noun phrase (row has {len(phrases)})")
    return labels


def overlay(grid: np.ndarray, colors: dict[int, tuple]) -> np.ndarray:
    """RGBA (24, 24, 4) drawn over the image: pruned cells dark, kept cells tinted."""
    rgba = np.zeros((*grid.shape, 4))
    rgba[grid == NOT_KEPT] = (0.0, 0.0, 0.0, 0.65)
    for j, color in colors.items():
        rgba[grid == j] = (*color[:3], 0.45 if j != GLOBAL else 0.15)
    return rgba


def draw_heatmap(image: Image.Image, row: dict, path: Path, config=None) -> np.ndarray:
    """Write the heatmap PNG of one prediction row to ``path``; return the kept mask drawn
    (bool (grids, 24, 24)). ``row`` holds the prediction columns in ``ROW_COLUMNS``; ``config``
    (the model's transformers config) is needed for LLaVA-NeXT rows (n_visual > 576)."""
    if row.get("kept_indices") is None:
        raise ValueError(f"row {row.get('sample_id')!r} has no kept_indices")
    packed, layout = None, None
    if row["n_visual"] > TOKENS_PER_GRID:
        if config is None:
            raise ValueError(f"row {row.get('sample_id')!r} has {row['n_visual']} visual tokens: "
                             "a LLaVA-NeXT row needs the model config to place them")
        packed, layout = next_layout((image.height, image.width), config)
    tokens, clusters, n_tokens, newlines = grid_tokens(row, packed)
    grid = cluster_grid(tokens, n_tokens, clusters)
    ids = sorted(set(np.unique(grid).tolist()) - {NOT_KEPT})
    colors = cluster_colors(max([j + 1 for j in ids if j >= 0], default=0))
    labels = cluster_labels(row, ids)
    views = grid_views(image, layout)
    cols = min(3, len(views))
    rows = math.ceil(len(views) / cols)
    use_cjk_font()
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows + 0.9), squeeze=False)
    for ax, (title, view), cells in zip(axes.flat, views, grid):
        ax.imshow(view, extent=(0, SIDE, SIDE, 0))
        ax.imshow(overlay(cells, colors), extent=(0, SIDE, SIDE, 0), interpolation="nearest")
        ax.set_xticks(np.arange(0, SIDE + 1, 4))
        ax.set_yticks(np.arange(0, SIDE + 1, 4))
        ax.set_xticks(np.arange(SIDE + 1), minor=True)
        ax.set_yticks(np.arange(SIDE + 1), minor=True)
        ax.grid(which="minor", color="white", linewidth=0.2, alpha=0.5)
        ax.tick_params(labelsize=7)
        ax.set_title(f"{title}: {int((cells != NOT_KEPT).sum())} kept", fontsize=9)
    for ax in list(axes.flat)[len(views):]:
        ax.axis("off")
    extra = int(row["n_kept"]) - len(row["kept_indices"])
    head = (f"{row['benchmark']} {row['sample_id']} · {row['variant']} @ {row['budget']}: "
            f"{len(row['kept_indices'])}/{row['n_visual']} tokens kept"
            + (f" (incl. {newlines} newline)" if newlines else "")
            + (f" + {extra} merged" if extra > 0 else ""))
    fig.suptitle(head + "\n" + textwrap.shorten(str(row.get("question") or ""), 110), fontsize=10)
    handles = [Patch(facecolor=colors[j][:3], edgecolor="black", label=labels[j]) for j in ids]
    handles.append(Patch(facecolor=(0.2, 0.2, 0.2), edgecolor="black", label="pruned"))
    fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8,
               bbox_to_anchor=(0.5, -0.01 - 0.04 * math.ceil(len(handles) / 4)))
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return grid != NOT_KEPT


def pick_rows(predictions: pl.LazyFrame, n: int, variant: str | None = None,
              budget: int | None = None) -> pl.DataFrame:
    """``n`` rows with kept indices and no error, alternating over benchmarks, in sample order.

    Defaults: the first variant (by label) whose method is ``icctp`` when the run has one (else
    every variant), the smallest budget of the chosen variant(s). Raises ValueError when no row
    qualifies."""
    names = predictions.collect_schema().names()
    rows = predictions.filter(pl.col("kept_indices").is_not_null() & pl.col("error").is_null())
    if variant is None:
        icctp = rows.filter(pl.col("method") == "icctp").select(pl.col("variant").min()).collect().item()
        variant = icctp
    if variant is not None:
        rows = rows.filter(pl.col("variant") == variant)
    if budget is None:
        budget = rows.select(pl.col("budget").min()).collect().item()
    if budget is None:
        raise ValueError(f"no prediction row with kept_indices and no error for variant {variant or 'any'}")
    rows = rows.filter(pl.col("budget") == budget)
    cols = [c for c in ROW_COLUMNS if c in names]
    picked = (rows.select(cols).sort("benchmark", "variant", "sample_id")
              .with_columns(pl.int_range(pl.len()).over("benchmark").alias("_rank"))
              .sort("_rank", "benchmark").head(n).drop("_rank").collect())
    if picked.is_empty():
        raise ValueError(f"no prediction row with kept_indices and no error for variant "
                         f"{variant or 'any'} at budget {budget}")
    return picked


def load_images(run_dir: Path, benchmark: str, sample_ids: list[str]) -> dict[str, bytes]:
    """Encoded image bytes per sample id from the run's prepared input shards (their image files, or an
    inline ``image`` column: binary, or a ``{bytes, path}`` struct as HF ``datasets`` stores images)."""
    files = input_files(run_dir, benchmark)
    if not files:
        raise FileNotFoundError(f"{run_dir}/inputs/benchmark={benchmark} has no Parquet shards")
    images = {sid: img["bytes"] if isinstance(img, dict) else img
              for sid, img in sample_images(files, sample_ids).items()}
    missing = [s for s in sample_ids if images.get(s) is None]
    if missing:
        raise ValueError(f"benchmark {benchmark}: no image in the input shards for {missing}")
    return images


def heatmaps_for_run(run_dir: Path, n: int, out_dir: Path | None = None, variant: str | None = None,
                     budget: int | None = None) -> list[Path]:
    """Write heatmaps of ``n`` prediction rows (see :func:`pick_rows`) under
    ``out_dir`` (default ``run_dir/heatmaps``); return the PNG paths."""
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir is not None else run_dir / "heatmaps"
    predictions = scan_predictions(run_dir)
    if predictions is None or n < 1:
        return []
    rows = pick_rows(predictions, n, variant, budget)
    config = model_config(read_run_info(run_dir)) if (rows["n_visual"] > TOKENS_PER_GRID).any() else None
    paths = []
    for (bench,), group in rows.group_by("benchmark", maintain_order=True):
        images = load_images(run_dir, bench, group["sample_id"].to_list())
        for row in group.iter_rows(named=True):
            image = Image.open(io.BytesIO(images[row["sample_id"]]))
            name = f"{bench}_{row['sample_id']}_{row['variant']}_{row['budget']}.png"
            path = out_dir / "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name)
            draw_heatmap(image, row, path, config)
            paths.append(path)
    return paths
