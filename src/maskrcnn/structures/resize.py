"""The resize rule: the output size of an image and how its pixels are resampled, for training and inference alike.

Shapes: C channels, H x W the image, h x w resized, O output positions along one axis, T taps per output position.

The short side goes to ``short_size`` unless the long side would then pass ``max_size``:
scale = min(short_size / min(H, W), max_size / max(H, W)). Three rules, ``InputConfig.resize``:

- ``"antialias"`` (the default): each side is round(side * scale), halves up, and pixels are resampled bilinearly
  with the triangle filter widened by the shrink factor when shrinking (PIL's BILINEAR filter;
  ``F.interpolate(..., antialias=True)``).
- ``"torchvision"``: each side is floor(side * scale) and pixels are resampled bilinearly without antialiasing:
  torchvision's ``GeneralizedRCNNTransform``, which trained torchvision's Mask R-CNN weights (they load with this
  rule, for their parity).
- ``"detectron2"``: detectron2's ``ResizeShortestEdge``, which trained its model-zoo weights: the short side is set
  to ``short_size``, the other scaled with it, then both scaled down together if the long side passes ``max_size``,
  each rounded half up; a uint8 image is resampled by PIL's BILINEAR filter itself and stays uint8 (the model
  resizes before normalising, as detectron2's predictor does), which ``F.interpolate`` matches only to within one
  grey level on ~1% of the pixels. A float image, and any image while tracing, is resampled as by "antialias" (a
  traced uint8 image rounded back to whole grey levels).

The data pipeline resizes training images with ``resize_image`` on their uint8 pixels (PIL's pixels when shrinking,
but for one level on under 1% of them), the model resizes test images with it on the normalised float image (as
torchvision orders the two): the same sizes and the same filter, the training images only rounded to uint8.

Why antialiasing: without it, shrinking by s reads only the 2 x 2 pixels nearest each output pixel and skips the
rest, so fine texture aliases and the result depends on sub-pixel position; Car-Parts images (512 px) shrink by 2
in the cpu-short recipe. Rounding instead of flooring gives 480 x 640 -> 800 x 1067 (the exact 1066.7 rounded).
Before this rule, training used PIL antialiased + rounded sizes and inference floor + plain bilinear, so the model
saw differently filtered images at test time than in training.

>>> resized_shape(480, 640, short_size=800, max_size=1333)
(800, 1067)
>>> resized_shape(480, 640, short_size=800, max_size=1333, rule="torchvision")
(800, 1066)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from maskrcnn.structures.sizes import as_tensor, is_tracing, size_tensor

RULES = ("antialias", "torchvision", "detectron2")
# rules whose library resamples the uint8 image, before normalising it
UINT8_RULES = ("detectron2",)


def resized_shape(
    height: int | Tensor, width: int | Tensor, *, short_size: int, max_size: int, rule: str = "antialias"
) -> tuple[int, int] | tuple[Tensor, Tensor]:
    """The (h, w) an image of (height, width) is resized to: Python ints, or 0-dim tensors while tracing.

    Computed in float64 tensors, operation for operation as Python floats compute it, so that a traced graph gives
    the same sizes as eager code (1-D tensors throughout: ONNX would turn 0-dim float64 values into float32).
    """
    if rule not in RULES:
        raise ValueError(f"unknown resize rule {rule!r}; expected one of {', '.join(RULES)}")
    size = size_tensor((height, width)).to(torch.float64)  # (2,): H, W
    sides = torch.cat([size.min(dim=0, keepdim=True).values, size.max(dim=0, keepdim=True).values])  # (2,)
    limits = torch.tensor([float(short_size), float(max_size)], dtype=torch.float64)
    if rule == "detectron2":
        scaled = _detectron2_scaled(size, float(short_size), float(max_size))
    else:
        scale = (limits / sides).min(dim=0, keepdim=True).values  # (1,)
        scaled = size * scale
    resized = (torch.floor(scaled) if rule == "torchvision" else torch.floor(scaled + 0.5)).clamp(min=1)
    resized = resized.to(torch.int64)
    if is_tracing():
        return resized[0], resized[1]
    h, w = resized.tolist()
    return h, w


def _detectron2_scaled(size: Tensor, short_size: float, max_size: float) -> Tensor:
    """detectron2's unrounded output size, operation for operation: size (2,) float64 (H, W) -> (2,) float64."""
    height, width = size[0:1], size[1:2]
    # tensor / tensor: torch computes a Python number / tensor as number * (1 / tensor), which differs from Python's
    # division in the last bit and flips the rounding of sizes that land on a half (600 x 1200 -> 667 x 1333)
    short = torch.full_like(height, short_size)  # (1,)
    scale = short / size.min(dim=0, keepdim=True).values  # (1,)
    # the short side is exactly short_size (height when H < W, else width), the other side * scale
    scaled = torch.where(height < width, torch.cat([short, scale * width]), torch.cat([scale * height, short]))
    longest = scaled.max(dim=0, keepdim=True).values
    return torch.where(longest > max_size, scaled * (torch.full_like(longest, max_size) / longest), scaled)


def resize_image(image: Tensor, size: tuple[int, int] | tuple[Tensor, Tensor], *, rule: str) -> Tensor:
    """image: Tensor[C, H, W] uint8 or float -> Tensor[C, h, w] of the same dtype, resampled by ``rule``.

    Enlarging, the antialiasing filter is the plain bilinear one, so the faster plain kernel is used. Traced (ONNX
    export), antialiased resampling of a float image is written out as gathers and weighted sums
    (``_antialiased_in_graph``): ONNX's Resize has no antialiasing before opset 18, and a graph cannot choose a
    kernel by the image's size.
    """
    if rule not in RULES:
        raise ValueError(f"unknown resize rule {rule!r}; expected one of {', '.join(RULES)}")
    if rule == "detectron2" and image.dtype == torch.uint8:
        if is_tracing():
            return _pil_bilinear_in_graph(image, size)
        return _pil_bilinear(image, size)
    if rule != "torchvision" and is_tracing():
        return _antialiased_in_graph(image, size)
    antialias = rule != "torchvision" and (size[0] < image.shape[-2] or size[1] < image.shape[-1])
    # (C, H, W) -> (1, C, H, W) -> (1, C, h, w) -> (C, h, w)
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=antialias)[0]


def _axis_taps(in_size: Tensor, out_size: Tensor) -> tuple[Tensor, Tensor]:
    """The antialiased bilinear filter along one axis, as F.interpolate(antialias=True) and PIL compute it.

    in_size, out_size: 0-dim int64 -> index: (O, T) int64 input positions, weight: (O, T) float32, each row summing
    to 1 (float64). Output position i is centred on input coordinate c = (i + 0.5) * s (s = in / out) and reads the inputs
    j within the triangle's half-width r = max(s, 1) of it, with weight max(0, 1 - |j + 0.5 - c| / r).
    Example: 4 -> 2 (s = 2, r = 2) gives output 0 centred on 1.0, reading inputs 0, 1, 2 with weights 3/7, 3/7, 1/7.
    """
    scale = in_size.to(torch.float64) / out_size.to(torch.float64)
    support = scale.clamp(min=1.0)
    taps = (torch.ceil(support) * 2 + 1).to(torch.int64)
    centre = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale  # (O,)
    first = (centre - support + 0.5).to(torch.int64).clamp(min=0)  # truncation, as the reference kernels
    end = torch.minimum((centre + support + 0.5).to(torch.int64), in_size)
    index = first[:, None] + torch.arange(taps)[None, :]  # (O, T)
    # PIL's operations: the distance times 1 / support, in float64
    weight = (1.0 - ((index - centre[:, None] + 0.5) * (1.0 / support)).abs()).clamp(min=0.0) * (index < end[:, None])
    weight = weight / weight.sum(dim=1, keepdim=True)
    return torch.minimum(index, in_size - 1), weight


def _antialiased_in_graph(image: Tensor, size: tuple[int, int] | tuple[Tensor, Tensor]) -> Tensor:
    """F.interpolate(antialias=True)'s resampling of a float image as gathers and sums that ONNX opset 16-17 can
    express: along the width, then along the height. image: Tensor[C, H, W] float -> Tensor[C, h, w]."""
    shape = torch._shape_as_tensor(image)
    index, weight = _axis_taps(shape[2], as_tensor(size[1]))
    # (C, H, W) -> (C, H, w, T) -> (C, H, w)
    x = (image[:, :, index] * weight.to(image.dtype)).sum(dim=-1)
    index, weight = _axis_taps(shape[1], as_tensor(size[0]))
    # (C, H, w) -> (C, w, H) -> (C, w, h, T) -> (C, w, h) -> (C, h, w)
    return (x.transpose(1, 2)[:, :, index] * weight.to(image.dtype)).sum(dim=-1).transpose(1, 2)


_PIL_PRECISION_BITS = 22  # PIL's 8-bit resampling: filter coefficients in fixed point, 2^-22 units


def _pil_bilinear_in_graph(image: Tensor, size: tuple[int, int] | tuple[Tensor, Tensor]) -> Tensor:
    """PIL's BILINEAR resize of a uint8 image, to the bit, in operations a trace keeps (for the ONNX export of
    models whose weights need it). image: Tensor[C, H, W] uint8 -> Tensor[C, h, w] uint8.

    PIL resamples 8-bit images in fixed point: each filter coefficient (``_axis_taps``) becomes round(k * 2^22),
    a pass sums pixel * coefficient onto 2^21 (rounding half up) and keeps the integer part of sum / 2^22, clipped to
    0-255; the width is resampled first, and its uint8 result is what the height pass reads. Every sum here is an
    integer under 2^31, exact in float64. Example: the 4 -> 2 taps 3/7, 3/7, 1/7 become 1797559, 1797559, 599186.
    The bytes equal PIL's for landscape and square images (tests/structures/test_resize.py); for some portrait
    downscales Pillow 13 runs the height pass first, and a few pixels then differ by one grey level.
    """
    one = float(1 << _PIL_PRECISION_BITS)
    shape = torch._shape_as_tensor(image)
    x = image.to(torch.float64)
    for axis, (in_size, out_size) in ((2, (shape[2], size[1])), (1, (shape[1], size[0]))):
        index, weight = _axis_taps(in_size, as_tensor(out_size))
        fixed = torch.floor(weight * one + 0.5)  # (O, T): the coefficients are never negative for this filter
        rows = x if axis == 2 else x.transpose(1, 2)
        # (C, R, In) -> (C, R, O, T) -> (C, R, O): one pass along the last axis
        summed = (rows[:, :, index] * fixed).sum(dim=-1) + one / 2
        out = torch.floor(summed / one).clamp(0, 255)
        x = out if axis == 2 else out.transpose(1, 2)
    return x.to(torch.uint8)


def _pil_bilinear(image: Tensor, size: tuple[int, int]) -> Tensor:
    """PIL's BILINEAR resize of a uint8 image: Tensor[C, H, W] uint8 -> Tensor[C, h, w] uint8 (PIL resamples each
    channel alike; an image of other than 3 channels goes channel by channel)."""
    pixels = image.permute(1, 2, 0).cpu().numpy()  # (C, H, W) -> (H, W, C)
    planes = [pixels] if pixels.shape[2] == 3 else [pixels[:, :, c] for c in range(pixels.shape[2])]
    resized = [
        np.array(Image.fromarray(np.ascontiguousarray(p)).resize((int(size[1]), int(size[0])), Image.BILINEAR))
        for p in planes
    ]
    out = resized[0] if len(planes) == 1 and planes[0].ndim == 3 else np.stack(resized, axis=2)  # (h, w, C)
    return torch.from_numpy(np.ascontiguousarray(out)).permute(2, 0, 1).to(image.device)
