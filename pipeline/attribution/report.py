"""``attribution.md`` beside the ``attributions/`` Parquet: the statistics of ``pipeline.attribution.stats``
per space and benchmark (matched images, the mismatched-image control, the position baseline), the
per-POS table, the image side against evidence and kept tokens, and Figure-2-style figures
(``attribution_img/``: the image under its attribution map, the question's words shaded)."""
from __future__ import annotations

import io
from pathlib import Path

import polars as pl

from pipeline.attribution.stats import image_stats, text_stats
from pipeline.manifest import Manifest
from pipeline.stages.shard_images import sample_images

CONTROL_SUFFIX = "-mismatched"


def read_attributions(run_dir: Path) -> pl.DataFrame:
    files = sorted((Path(run_dir) / "attributions").rglob("part-*.parquet"))
    if not files:
        raise FileNotFoundError(f"no attribution files under {run_dir}/attributions")
    return pl.concat([pl.read_parquet(f, hive_partitioning=False) for f in files], how="vertical_relaxed")


def _text_lines(matched, control) -> list[str]:
    head = "| words | share of attribution | base rate (share of words) | enrichment | top word in class | " \
           "share from position alone | mismatched image: share | mismatched: enrichment |"
    lines = [head, "|" + "---|" * 8]
    for name, est in matched.classes.items():
        ctl = control.classes[name] if control else None
        lines.append(f"| {name} | {est['share']} | {est['base']} | {est['enrichment']} | {est['top']} | "
                     f"{est['position']} | {ctl['share'] if ctl else '–'} | {ctl['enrichment'] if ctl else '–'} |")
    lines += ["", "| POS | share | base rate | enrichment |", "|---|---|---|---|"]
    lines += [f"| {p} | {e['share']} | {e['base']} | {e['enrichment']} |" for p, e in matched.pos.items()]
    return lines


def _image_lines(stats) -> list[str]:
    lines = []
    if stats.evidence is not None:
        lines += [f"Image attribution on the asked object's patches (`evidence_patches`, {stats.n_evidence} "
                  f"questions): **{stats.evidence}** × the uniform share; the most attributed token lies on them "
                  f"in {stats.top_on_evidence} of the questions.", ""]
    if stats.overlap:
        lines += ["| kept tokens of | overlap with the top-k attributed (k = kept) | chance (k / n) |", "|---|---|---|"]
        lines += [f"| {key} | {est} | {chance:.3f} |" for key, (est, chance) in sorted(stats.overlap.items())]
    return lines


def figure(image_bytes: bytes, row: dict, path: Path) -> None:
    """Figure 2 style: the image with the attribution map (min-max scaled for display only) above, the
    question with each word shaded by its attribution below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
    attribution = np.asarray(row["image_attribution"], float)
    side = int(round(len(attribution) ** 0.5))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(4.2, 5.0), gridspec_kw={"height_ratios": [5, 1]})
    top.imshow(image)
    if side * side == len(attribution):
        grid = attribution.reshape(side, side)
        grid = (grid - grid.min()) / max(np.ptp(grid), 1e-12)
        top.imshow(grid, cmap="jet", alpha=0.45, extent=(0, image.shape[1], image.shape[0], 0), interpolation="bilinear")
    top.set_axis_off()
    top.set_title(f"{row['space']} · {row['sample_id']}", fontsize=8)
    bottom.set_axis_off()
    words = row["words"]
    values = np.array([w["attribution"] or 0.0 for w in words])
    scaled = (values - values.min()) / max(np.ptp(values), 1e-12)
    x = 0.0
    for w, s in zip(words, scaled):
        text = bottom.text(x, 0.5, w["text"], fontsize=9, va="center", transform=bottom.transAxes,
                           bbox=dict(facecolor=(1.0, 0.2, 0.2, 0.8 * s), edgecolor="none", pad=1.5))
        fig.canvas.draw()
        box = text.get_window_extent().transformed(bottom.transAxes.inverted())
        x = box.x1 + 0.02
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _figures(run_dir: Path, rows: pl.DataFrame, bench: str, n: int) -> list[str]:
    """Draw the first ``n`` answered questions of ``bench``; returns Markdown image lines."""
    if n <= 0:
        return []
    picked = rows.filter(pl.col("error").is_null()).sort("sample_id").head(n)
    if picked.is_empty():
        return []
    shards = sorted((run_dir / "inputs" / f"benchmark={bench}").glob("shard-*.parquet"))
    by_id = sample_images(shards, picked["sample_id"].to_list())
    out_dir = run_dir / "attribution_img"
    out_dir.mkdir(exist_ok=True)
    lines = []
    for row in picked.iter_rows(named=True):
        name = f"{bench}_{row['space']}_{row['sample_id']}.png".replace("/", "_")
        figure(by_id[row["sample_id"]], row, out_dir / name)
        lines.append(f"![{row['question']}](attribution_img/{name})")
    return lines


def write_attribution_report(run_dir: Path, manifest: Manifest) -> Path:
    """Write ``run_dir/attribution.md`` (and its figures); return its path."""
    run_dir = Path(run_dir)
    spec = manifest.attribution
    data = read_attributions(run_dir)
    lines = [f"# CIBA attribution: {manifest.name}", "",
             f"Model `{manifest.model.path}`; bottleneck β image {spec.beta_image}, β text {spec.beta_text}, "
             f"α₀ {spec.alpha0}, {spec.steps} Adam steps at lr {spec.lr}, {spec.n_noise} noise samples. Attribution "
             "is the raw capacity (nats) of the read-out pass; a word's is the sum over its pieces. Values are "
             "macro means over questions with bootstrap 95% intervals; enrichment = share / base rate; "
             "punctuation is left out. What this shows and does not: docs/ciba.md.", ""]
    for space in sorted(data["space"].unique().to_list()):
        for bench in manifest.benchmarks:
            matched = data.filter((pl.col("space") == space) & (pl.col("benchmark") == bench))
            control = data.filter((pl.col("space") == space) & (pl.col("benchmark") == bench + CONTROL_SUFFIX))
            n_err = matched.filter(pl.col("error").is_not_null()).height
            lines += [f"## {bench} · {space} space", "",
                      f"{matched.height} questions, {n_err} with an error"
                      + (f"; mismatched-image control: {control.height} questions." if control.height else "."), ""]
            text = text_stats(matched, spec.bootstrap)
            ctl = text_stats(control, spec.bootstrap) if control.height else None
            if text is not None:
                lines += ["### Question words", ""] + _text_lines(text, ctl) + [""]
            image = image_stats(matched, spec.bootstrap)
            if image is not None:
                lines += ["### Image", ""] + _image_lines(image) + [""]
            lines += _figures(run_dir, matched, bench, spec.figures) + [""]
    path = run_dir / "attribution.md"
    path.write_text("\n".join(lines))
    return path
