"""Reading images from disk into RGB uint8 arrays, whatever their mode.

Grayscale, palette, RGBA (alpha dropped), CMYK, 16-bit and 32-bit images are converted to
8-bit RGB; EXIF orientation is applied, as cameras and phones expect. A file that cannot be decoded raises
``UserError`` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from maskrcnn.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """PIL image of any mode -> ndarray[H, W, 3] uint8, RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        if image.mode == "F":
            top = max(float(arr.max(initial=0)), 1.0)
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read ``path`` -> ndarray[H, W, 3] uint8 RGB, EXIF orientation applied.

    Raises ``UserError`` for a missing, unreadable, truncated or non-image file.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so a truncated file fails here and not later
            image = ImageOps.exif_transpose(image)
            return to_rgb_array(image)
    except FileNotFoundError:
        raise UserError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserError(f"cannot read image {path}: {e}") from None


def list_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (not recursive into hidden folders) into a sorted list of image files.

    A folder contributes the files with an image suffix found under it; a file is taken as given, whatever its
    suffix, so that a mis-named or corrupt file is reported by name rather than silently skipped.
    """
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found.extend(
                sorted(
                    f
                    for f in p.rglob("*")
                    if f.is_file()
                    and f.suffix.lower() in IMAGE_SUFFIXES
                    and not any(part.startswith(".") for part in f.relative_to(p).parts)
                )
            )
        elif p.exists():
            found.append(p)
        else:
            raise UserError(f"input not found: {p}")
    return found
