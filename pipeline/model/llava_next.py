"""LLaVA-NeXT adapter (transformers ``LlavaNextForConditionalGeneration``).

Modifications relative to stock transformers:
1. The any-resolution image processor (tiling into base + crops) runs apart from the model
   (``pixel_inputs``, CPU). All grids of the batch's distinct images go through ``vision.encode`` in one
   tower pass, which also yields each grid's CLS attention row (pre-hook, no eager attention).
2. Packing follows ``LlavaNextModel.pack_image_features`` (spatial_unpad): base grid, then the crops
   stitched into one map, unpadded to the image's aspect ratio, with ``image_newline`` at each row
   end. It is computed once on token *indices*, so every packed position knows its grid and its
   CLS attention; the grids (base and each crop's unpadded part) are pruned separately with budgets
   split by token count, and the newline tokens are always kept.
3. The text keeps one ``<image>`` token and the kept tokens are spliced at its place; batches are
   left-padded and decoded greedily by ``generation.greedy`` (as for LLaVA-1.5).
Weights, attention implementations (sdpa) and the language model are unchanged.
"""
from __future__ import annotations

import torch
from PIL import Image

from pipeline.model import compat, vision
from pipeline.model.visual import ImagePixels, VisualTokens, processed_pixels

MODEL_CLASS = "LlavaNextForConditionalGeneration"  # the transformers class ``load_vlm`` loads for this family
NEWLINE = -1


def packed_index(image_size: tuple[int, int], config) -> torch.Tensor:
    """Packed visual sequence of one image as indices into its flattened grid tokens (P*n,), -1 = newline.

    ``image_size`` is (height, width) of the original image; grid 0 is the base image.
    """
    grid_shape, unpad = compat.anyres_helpers()
    side = config.vision_config.image_size // config.vision_config.patch_size
    n = side * side
    rows, cols = grid_shape(list(image_size), config.image_grid_pinpoints, config.vision_config.image_size)
    crops = torch.arange(n, n * (1 + rows * cols)).view(rows, cols, side, side, 1)
    crops = crops.permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)  # (1, rows*side, cols*side)
    crops = unpad(crops, list(image_size))[0]  # (H, W)
    crops = torch.cat([crops, torch.full((crops.shape[0], 1), NEWLINE)], dim=1).flatten()
    return torch.cat([torch.arange(n), crops])


def num_grids(image_size: tuple[int, int], config) -> int:
    grid_shape, _ = compat.anyres_helpers()
    rows, cols = grid_shape(list(image_size), config.image_grid_pinpoints, config.vision_config.image_size)
    return 1 + rows * cols


def pixel_inputs(processor, config, images: list[Image.Image], keys: list[str],
                 dtype: torch.dtype) -> list[ImagePixels]:
    """CPU half: the any-resolution image processor; each image keeps its own grids (base + crops)."""
    pixels, rest = processed_pixels(processor.image_processor, images)  # (N, P max, 3, 336, 336)
    out = []
    for i, key in enumerate(keys):
        size = tuple(int(v) for v in rest["image_sizes"][i])
        count = num_grids(size, config)
        out.append(ImagePixels(key, pixels[i, :count].to(dtype), size))  # (P, 3, 336, 336)
    return out


def visual_tokens(model, images: list[ImagePixels]) -> list[VisualTokens]:
    """Model half: encode distinct images (all their grids in one batched tower call) into visual layouts."""
    config = model.config
    sizes = [im.image_size for im in images]
    counts = [im.pixel_values.shape[0] for im in images]
    pixels = torch.cat([im.pixel_values for im in images])  # (sum P, 3, 336, 336)
    features, cls_attn, states = vision.encode(model, pixels)  # (sum P, n, d), (sum P, n), per pass
    n = features.shape[1]
    newline = compat.image_newline(model).to(features.dtype)
    out, start = [], 0
    for size, count in zip(sizes, counts):
        feats = features[start : start + count].flatten(0, 1)  # (P*n, d)
        attn = cls_attn[start : start + count].flatten()  # (P*n,)
        image_states = states[start : start + count]
        start += count
        index = packed_index(size, config).to(features.device)
        is_token = index >= 0
        safe = index.clamp(min=0)
        tokens = torch.where(is_token[:, None], feats[safe], newline)
        grid_of = torch.where(is_token, safe // n, torch.full_like(index, NEWLINE))
        positions = torch.arange(index.numel(), device=features.device)
        grids = [positions[grid_of == g] for g in range(count)]
        grids = [g for g in grids if g.numel()]
        pass_positions = torch.full((count * n,), -1, dtype=torch.long, device=features.device)
        pass_positions[index[is_token]] = positions[is_token]
        out.append(VisualTokens(tokens, grids, [attn[index[g]] for g in grids], positions[~is_token], image_states,
                                pass_positions.view(count, n)))
    return out
