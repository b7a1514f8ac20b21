"""A batch of images of different sizes, padded into one tensor, remembering each image's own size."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class ImageList:
    """tensor: Tensor[N, 3, Hp, Wp], zero-padded at the bottom and right; image_sizes: N x (height, width)."""

    tensor: Tensor
    image_sizes: list[tuple[int, int]]

    @classmethod
    def from_tensors(cls, images: list[Tensor], *, size_divisible: int = 32) -> ImageList:
        """images: N x Tensor[C, H, W] -> ImageList, padded to the largest H, W rounded up to ``size_divisible``."""
        if not images:
            raise ValueError("no images to batch")
        image_sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        max_h = max(h for h, _ in image_sizes)
        max_w = max(w for _, w in image_sizes)
        if size_divisible > 1:
            max_h = -(-max_h // size_divisible) * size_divisible
            max_w = -(-max_w // size_divisible) * size_divisible
        batch = images[0].new_zeros((len(images), images[0].shape[0], max_h, max_w))  # (N, C, Hp, Wp)
        for padded, image in zip(batch, images):
            padded[:, : image.shape[-2], : image.shape[-1]].copy_(image)
        return cls(batch, image_sizes)
