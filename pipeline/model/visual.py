"""One image on its way to the language model: pixels for the tower (``ImagePixels``, from the CPU
half of a family module, which stacks its image processor's output with ``processed_pixels``) and the
visual-token layout before pruning (``VisualTokens``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.model.vision import TowerStates


@dataclass
class ImagePixels:
    """One distinct image, ready for the vision tower.

    key: identity of the decoded image (``images.image_key``); pixel_values: (P, 3, S, S) in the
    model's dtype, P = 1 for LLaVA-1.5, base + anyres crops for LLaVA-NeXT (S = the tower's input
    side, 336); image_size: (height, width) of the decoded RGB image.
    """

    key: str
    pixel_values: torch.Tensor
    image_size: tuple[int, int]


@dataclass
class VisualTokens:
    """One image's visual sequence, in the order the stock model splices it.

    tokens: (n_visual, d_llm) projected tokens (LLaVA-NeXT: base grid, unpadded crops with row-end
        newline tokens); grids: per prunable grid, the LongTensor positions of its tokens in
        ``tokens``; grid_cls: per grid, the CLS attention of those tokens (float32, same length);
        fixed: positions always kept (LLaVA-NeXT newlines; empty for LLaVA-1.5).
    states: the tower states of the image's P tower passes (base, then crops), for the methods that
        act on the vision tower's output; pass_positions: (P, n) the position in ``tokens`` of each
        pass's patch, -1 where the packed sequence has none (LLaVA-NeXT unpadding).
    n_source: for tokens merged inside the tower (ToMe), the patches the tower started from, else None.
    """

    tokens: torch.Tensor
    grids: list[torch.Tensor]
    grid_cls: list[torch.Tensor]
    fixed: torch.Tensor
    states: TowerStates | None = None
    pass_positions: torch.Tensor | None = None
    n_source: int | None = None

    @property
    def n_visual(self) -> int:
        return self.tokens.shape[0]

    @property
    def n_features(self) -> int:
        return sum(int(g.numel()) for g in self.grids)


def processed_pixels(image_processor, images: list) -> tuple[torch.Tensor, dict]:
    """The image processor's ``pixel_values`` for ``images`` stacked into one float tensor (N, ...), and
    its other outputs.

    Taken as per-image arrays and stacked by ``torch.stack`` rather than with ``return_tensors="pt"``
    (``np.array`` over the arrays): the same values bit for bit, 1.6x faster for LLaVA-NeXT's padded grids and
    as fast for LLaVA-1.5's single grid (``scripts/bench_pixels.py``)."""
    out = dict(image_processor(images))
    return torch.stack([torch.as_tensor(v) for v in out.pop("pixel_values")]), out
