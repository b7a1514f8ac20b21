"""A batch of images of different sizes, padded into one tensor, remembering each image's own size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class ImageList:
    """tensor: Tensor[N, 3, Hp, Wp], zero-padded at the bottom and right; image_sizes: N x (height, width), ints
    (0-dim tensors while tracing)."""

    tensor: Tensor
    image_sizes: list[tuple[int, int]]

    @classmethod
    def from_tensors(cls, images: list[Tensor], *, size_divisible: int = 32) -> ImageList:
        """images: N x Tensor[C, H, W] -> ImageList, padded to the largest H, W rounded up to ``size_divisible``."""
        if not images:
            raise ValueError("no images to batch")
        image_sizes = [tuple(im.shape[-2:]) for im in images]
        max_h = max(h for h, _ in image_sizes)
        max_w = max(w for _, w in image_sizes)
        if size_divisible > 1:
            # rounded up, on non-negative values only (an ONNX graph's integer division truncates)
            max_h = (max_h + size_divisible - 1) // size_divisible * size_divisible
            max_w = (max_w + size_divisible - 1) // size_divisible * size_divisible
        # N x (C, H, W) -> N x (C, Hp, Wp) -> (N, C, Hp, Wp); F.pad, not a copy into zeros, so that a trace keeps it
        padded = [F.pad(image, (0, max_w - w, 0, max_h - h)) for image, (h, w) in zip(images, image_sizes)]
        return cls(torch.stack(padded), image_sizes)
