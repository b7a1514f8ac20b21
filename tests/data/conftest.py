"""Helpers for the data tests: tiny images written on the fly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def write_image() -> Callable[..., Path]:
    """write_image(path, width, height, colour=(0, 0, 0)) -> path: a solid-colour image (format from the suffix)."""

    def write(path: Path, width: int, height: int, colour: tuple[int, int, int] = (0, 0, 0)) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.zeros((height, width, 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        return path

    return write
