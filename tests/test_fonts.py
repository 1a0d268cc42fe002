"""Figures render Chinese text: the packaged CJK font is registered, no glyph falls back to a box."""
from __future__ import annotations

import warnings

import matplotlib
import numpy as np
from PIL import Image

from pipeline.report.fonts import cjk_font_file, use_cjk_font
from pipeline.report.heatmap import draw_heatmap

QUESTION = "图中的 iPhone 手机是什么颜色？（请选择）"


def glyph_warnings(draw) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        draw()
    return [str(w.message) for w in caught if "Glyph" in str(w.message)]


def chinese_figure(path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 1))
    ax.set_title(QUESTION)
    fig.savefig(path)
    plt.close(fig)


def test_font_file_has_every_glyph_of_the_question():
    from fontTools.ttLib import TTFont

    font = TTFont(cjk_font_file())
    cmap = font.getBestCmap()
    assert all(ord(c) in cmap for c in QUESTION if not c.isspace())
    assert font["OS/2"].usWeightClass == 400 and "fvar" not in font


def test_chinese_text_without_the_font_is_missing_glyphs(tmp_path):
    use_cjk_font()
    with matplotlib.rc_context({"font.family": ["DejaVu Sans"]}):
        missing = glyph_warnings(lambda: chinese_figure(tmp_path / "boxes.png"))
    assert missing and "DejaVu Sans" in missing[0]


def test_chinese_heatmap_renders_every_glyph(tmp_path):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
    kept = sorted(rng.choice(576, size=32, replace=False).tolist())
    row = {"benchmark": "mmbench_cn", "sample_id": "241", "variant": "icctp", "method": "icctp", "budget": 32, "question": QUESTION,
           "n_visual": 576, "n_kept": 32, "kept_indices": kept, "kept_clusters": [i % 4 - 1 for i in range(32)],
           "noun_phrases": ["图", "iPhone", "手机", "颜色"], "center_source": "nouns"}
    assert glyph_warnings(lambda: draw_heatmap(image, row, tmp_path / "h.png")) == []
    assert glyph_warnings(lambda: chinese_figure(tmp_path / "title.png")) == []
    assert matplotlib.rcParams["font.family"][-1] == use_cjk_font() == "Noto Sans SC"
