"""Anchor boxes: one size per FPN level, several aspect ratios, tiled over every feature-map cell.

Shapes: L levels, A anchors per cell (len(aspect_ratios)), level l has an H_l x W_l grid.

The anchors of all levels are concatenated in (level, y, x, a) order, matching how the RPN head's outputs are
flattened: ``anchors: Tensor[sum_l H_l * W_l * A, 4]`` (x1, y1, x2, y2), absolute pixels of the padded batch.

Base anchors are centred on 0 with width s / sqrt(r) and height s * sqrt(r) (r = height / width), then rounded to
integers (torchvision), or kept exact (``rounded=False``, detectron2). Example: size 10, ratio 1, stride 5 on a
3 x 3 grid gives [-5, -5, 5, 5], [0, -5, 10, 5], [5, -5, 15, 5], [-5, 0, 5, 10], ...; size 32, ratio 0.5 gives
[-23, -11, 23, 11] rounded and [-22.627, -11.314, 22.627, 11.314] exact.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from maskrcnn.structures.sizes import is_tracing


def base_anchors(size: float, aspect_ratios: tuple[float, ...], *, rounded: bool = True) -> Tensor:
    """Tensor[A, 4] anchors centred on (0, 0) with area size**2, one per aspect ratio (height / width), rounded to
    whole pixels or not.

    Each is computed in the order of operations of the weights' library: torchvision's in float32 before rounding,
    detectron2's (w = sqrt(size**2 / r), h = r * w) in float64, then stored as float32.
    """
    if not rounded:
        ratios = torch.as_tensor(aspect_ratios, dtype=torch.float64)
        ws = torch.sqrt(size * size / ratios)  # (A,)
        hs = ratios * ws
        return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).to(torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    h_ratios = torch.sqrt(ratios)
    ws = (1.0 / h_ratios) * size  # (A,)
    hs = h_ratios * size
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


class AnchorGenerator(nn.Module):
    """Tiles ``sizes[l]`` x ``aspect_ratios`` anchors over level l's feature map, with that level's stride.

    ``strides`` are the true strides of the levels (4, 8, 16, 32, 64 for P2-P6). With ``strides_from_image_size``
    the stride is instead padded_image_size // grid_size per axis, which is what torchvision does (and what its
    weights were trained with); the two differ only when the padded image size is not a multiple of the stride.
    """

    def __init__(
        self,
        *,
        sizes: tuple[float, ...],
        aspect_ratios: tuple[float, ...],
        strides: tuple[int, ...],
        strides_from_image_size: bool = False,
        rounded: bool = True,
    ):
        """rounded: base anchors rounded to whole pixels (``base_anchors``)."""
        super().__init__()
        if len(sizes) != len(strides):
            raise ValueError(f"{len(sizes)} anchor sizes for {len(strides)} feature levels")
        self.strides = strides
        self.strides_from_image_size = strides_from_image_size
        self.num_anchors_per_cell = len(aspect_ratios)
        self.cell_anchors = [base_anchors(s, aspect_ratios, rounded=rounded) for s in sizes]  # L x (A, 4)
        self._cache: dict[tuple, list[Tensor]] = {}

    def level_strides(self, image_size: tuple[int, int], grid_sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """(stride_y, stride_x) per level."""
        if self.strides_from_image_size:
            return [(image_size[0] // gh, image_size[1] // gw) for gh, gw in grid_sizes]
        return [(s, s) for s in self.strides]

    def grid_anchors(
        self, grid_sizes: list[tuple[int, int]], strides: list[tuple[int, int]], device: torch.device
    ) -> list[Tensor]:
        """Per level: Tensor[H_l * W_l * A, 4] in (y, x, a) order."""
        anchors = []
        for (gh, gw), (sy, sx), cell in zip(grid_sizes, strides, self.cell_anchors):
            cell = cell.to(device)
            shift_x = torch.arange(gw, dtype=torch.int32, device=device) * sx
            shift_y = torch.arange(gh, dtype=torch.int32, device=device) * sy
            yy, xx = torch.meshgrid(shift_y, shift_x, indexing="ij")  # (gh, gw) each
            xx, yy = xx.reshape(-1), yy.reshape(-1)
            shifts = torch.stack((xx, yy, xx, yy), dim=1)  # (gh*gw, 4)
            # (gh*gw, 1, 4) + (1, A, 4) -> (gh*gw*A, 4)
            anchors.append((shifts.view(-1, 1, 4) + cell.view(1, -1, 4)).reshape(-1, 4))
        return anchors

    def forward(self, image_size: tuple[int, int], features: list[Tensor]) -> list[Tensor]:
        """image_size: the padded batch's (H, W); features: L x (N, C, H_l, W_l) -> L x Tensor[H_l * W_l * A, 4].

        Sizes are ints, or 0-dim tensors while tracing: then the grids follow the traced sizes and nothing is cached.
        """
        grid_sizes = [(f.shape[-2], f.shape[-1]) for f in features]
        strides = self.level_strides(image_size, grid_sizes)
        device = features[0].device
        if is_tracing():
            return self.grid_anchors(grid_sizes, strides, device)
        key = (tuple(grid_sizes), tuple(strides), str(device))
        if key not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = self.grid_anchors(grid_sizes, strides, device)
        return self._cache[key]
