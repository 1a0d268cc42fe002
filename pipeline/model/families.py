"""Model families by ``config.model_type``: the module that owns a family's pixels and visual layout.

Each family module has ``MODEL_CLASS`` (the name of the transformers class ``load_vlm`` loads),
``pixel_inputs(processor, config, images, keys, dtype) -> list[ImagePixels]`` (CPU, no weights) and
``visual_tokens(model, images) -> list[VisualTokens]`` (the model side). ``FAMILIES`` is the one place
a family is registered.
"""
from __future__ import annotations

from types import ModuleType

from pipeline.model import llava, llava_next

FAMILIES: dict[str, ModuleType] = {"llava": llava, "llava_next": llava_next}


def family(config) -> ModuleType:
    """The family module of a LLaVA config; other model types are a ValueError naming the known ones."""
    if config.model_type not in FAMILIES:
        raise ValueError(f"model_type {config.model_type!r} is not one of {sorted(FAMILIES)}")
    return FAMILIES[config.model_type]
