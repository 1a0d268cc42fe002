"""LLaVA-1.5 adapter (transformers ``LlavaForConditionalGeneration``).

Modifications relative to stock transformers:
1. The image processor runs apart from the model (``pixel_inputs``, CPU), then images are encoded
   by ``vision.encode``: one tower pass per distinct image of the batch, features
   of ``vision_feature_layer`` with CLS dropped, then the projector (same math as
   ``LlavaModel.get_image_features``); a pre-hook on that layer's attention also yields the CLS
   attention row (no eager attention, no n x n maps).
2. The text keeps a single ``<image>`` token (the processor's 576-fold expansion is skipped); the
   visual tokens kept by the pruning method are spliced at its place (``assemble.splice``).
3. Batches are left-padded with position ids counted from the mask, and decoded greedily by
   ``generation.greedy`` through ``model.model.language_model`` and ``model.lm_head``.
Weights, attention implementations (sdpa) and the language model itself are unchanged.
"""
from __future__ import annotations

import torch
from PIL import Image

from pipeline.model import vision
from pipeline.model.visual import ImagePixels, VisualTokens, processed_pixels

MODEL_CLASS = "LlavaForConditionalGeneration"  # the transformers class ``load_vlm`` loads for this family

def pixel_inputs(processor, config, images: list[Image.Image], keys: list[str],
                 dtype: torch.dtype) -> list[ImagePixels]:
    """CPU half: the CLIP image processor (resize, center crop, normalize) on distinct RGB images."""
    pixels = processed_pixels(processor.image_processor, images)[0].to(dtype)  # (N, 3, 336, 336)
    return [ImagePixels(key, pixels[i : i + 1], (im.height, im.width)) for i, (im, key) in enumerate(zip(images, keys))]


def visual_tokens(model, images: list[ImagePixels]) -> list[VisualTokens]:
    """Model half: encode distinct images (one batched tower call) into their visual layouts."""
    pixels = torch.cat([im.pixel_values for im in images])  # (N, 3, 336, 336)
    features, cls_attn, states = vision.encode(model, pixels)  # (N, 576, d), (N, 576), per image
    n = features.shape[1]
    grid = torch.arange(n, device=features.device)
    empty = torch.empty(0, dtype=torch.long, device=features.device)
    return [VisualTokens(features[i], [grid], [cls_attn[i]], empty, states[i : i + 1], grid[None])
            for i in range(len(images))]
