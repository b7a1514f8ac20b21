"""Image and count sizes that stay in the graph when the model is traced (ONNX export).

Eagerly, sizes are Python ints: ``image.shape[-1]`` is an int and ``min(k, n)`` is Python's. While tracing,
``image.shape[-1]`` is a 0-dim int64 tensor that the tracer records, so arithmetic on it follows the input's size in
the exported graph, but Python's ``min``, ``max``, ``int()``, ``len()`` and ``if`` on it would freeze the example's
value into the graph. The model's code therefore writes sizes as ``tuple(x.shape[-2:])``, never calls ``int()`` or
``len()`` on them, and uses the helpers below where it compares them (as torchvision's and detectron2's detectors do).
"""

from __future__ import annotations

import torch
from torch import Tensor

def is_tracing() -> bool:
    """True while ``torch.jit.trace`` or the ONNX exporter records the model."""
    return torch.jit.is_tracing()


def at_most(count: int | Tensor, limit: int) -> int | Tensor:
    """min(count, limit); an op of the traced graph when ``count`` is a traced size.

    >>> at_most(5, 3)
    3
    """
    if isinstance(count, Tensor):
        return count.clamp(max=limit)
    return min(count, limit)


def size_tensor(sizes: tuple[int | Tensor, ...]) -> Tensor:
    """(h, w) of ints or traced 0-dim tensors -> Tensor[2] int64 (on the CPU), traced when they are.

    >>> size_tensor((480, 640)).tolist()
    [480, 640]
    """
    return torch.stack([as_tensor(s) for s in sizes])


def as_tensor(size: int | Tensor) -> Tensor:
    """An int -> a 0-dim int64 tensor; a traced size stays the traced tensor it is (``torch.as_tensor`` would record
    its value as a constant)."""
    return size.to(torch.int64) if isinstance(size, Tensor) else torch.tensor(size, dtype=torch.int64)
