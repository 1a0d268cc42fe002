"""The CJK font of every figure: Noto Sans SC Regular, from the ``justmytype-intl-cjk`` wheel.

The wheel (a project dependency) ships Google's variable ``NotoSansSC[wght].ttf`` with its licence,
the SIL Open Font License 1.1 (``OFL.txt`` beside it). Its default instance is Thin (wght 100) and
matplotlib draws only the default instance, so the Regular instance (wght 400) is cut once with
fontTools' instancer into ``$ICCTP_CACHE/fonts/`` (about a minute on one core; ``scripts/setup.sh``
does it). :func:`use_cjk_font` puts it after DejaVu Sans in matplotlib's ``font.family``: Latin
text looks as before, and each glyph DejaVu lacks (CJK, full-width punctuation) comes from Noto
Sans SC instead of an empty box and a "Glyph ... missing" warning.
"""
from __future__ import annotations

import functools
import importlib.resources
import os
from pathlib import Path

import matplotlib
from matplotlib import font_manager

from pipeline.fixtures import cache_dir

VARIABLE_FONT = ("justmytype_intl_cjk", "fonts/ofl/notosanssc/NotoSansSC[wght].ttf")
REGULAR = 400


def cjk_font_file() -> Path:
    """Path of the cached static Noto Sans SC Regular TTF, cut from the variable font on first use."""
    path = cache_dir() / "fonts" / f"NotoSansSC-wght{REGULAR}.ttf"
    if not path.exists():
        from fontTools.ttLib import TTFont
        from fontTools.varLib import instancer

        source = importlib.resources.files(VARIABLE_FONT[0]) / VARIABLE_FONT[1]
        with importlib.resources.as_file(source) as variable:
            font = instancer.instantiateVariableFont(TTFont(variable), {"wght": REGULAR})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        font.save(tmp)
        os.replace(tmp, path)
    return path


@functools.cache
def use_cjk_font() -> str:
    """Register the CJK font with matplotlib and append it to ``font.family``; returns its family name."""
    path = cjk_font_file()
    font_manager.fontManager.addfont(str(path))
    name = font_manager.FontProperties(fname=str(path)).get_name()
    families = [f for f in matplotlib.rcParams["font.family"] if f != name]
    if families == ["sans-serif"]:
        families = list(matplotlib.rcParams["font.sans-serif"][:1])
    matplotlib.rcParams["font.family"] = [*families, name]
    return name
