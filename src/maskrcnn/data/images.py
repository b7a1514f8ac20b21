"""Reading images from disk into RGB uint8 arrays, whatever their mode; image sizes from file headers; where an
annotation file's images are.

Grayscale, palette, RGBA (alpha dropped), CMYK, 16-bit and 32-bit images are converted to
8-bit RGB; EXIF orientation is applied, as cameras and phones expect. A file that cannot be decoded raises
``UserError`` naming it and saying why (missing, empty, not an image, truncated, too many pixels).

Pixel limit: an image is decoded only when it has at most ``max_pixels`` pixels (default ``DEFAULT_MAX_PIXELS``,
100 million, e.g. 12000 x 8000), checked from its header before any pixel is decoded. This replaces Pillow's own
decompression-bomb limit (89.5 million pixels, an error at twice that), which would otherwise stop at images a
caller has allowed.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from maskrcnn.errors import ArgumentError, UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_SUBFOLDERS = ("images", "JPEGImages")  # where datasets keep their images, beside the annotation file
DEFAULT_MAX_PIXELS = 100_000_000

_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_PIL_LIMIT = threading.Lock()  # Pillow's pixel limit is a global; we lift it only while reading a header


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


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """``Image.open`` (header only) without Pillow's pixel limit, with every failure as a ``UserError`` that says
    why. The caller applies its own limit before decoding."""
    try:
        with _PIL_LIMIT:
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                image = Image.open(path)
            finally:
                Image.MAX_IMAGE_PIXELS = limit
    except FileNotFoundError:
        raise UserError(f"image not found: {path}") from None
    except UnidentifiedImageError:
        raise UserError(f"cannot read image {path}: {_not_an_image(path)}") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise UserError(f"cannot read image {path}: {getattr(e, 'strerror', None) or e}") from None
    with image:
        try:
            yield image
        except (OSError, ValueError, SyntaxError) as e:  # decoding: truncated or damaged data
            raise UserError(f"cannot read image {path}: the file is truncated or damaged ({e})") from None


def _not_an_image(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError as e:
        return str(e.strerror or e)
    if not head:
        return "the file is empty"
    return f"not an image format Pillow reads (JPEG, PNG, BMP, TIFF, WebP, ...); it starts with {head!r}"


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    # Pillow looks for a PNG's EXIF past its pixel data by decoding them all; the PNG specification puts the eXIf
    # chunk before them, where Image.open has read it already.
    if image.format == "PNG" and "exif" not in image.info:
        return width, height
    if image.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image as ``read_image`` will return it (EXIF rotation applied), from its header only.

    Raises ``UserError`` naming the file when it cannot be opened as an image.
    """
    with _open(Path(path)) as image:
        return _oriented_size(image)


class TooManyPixels(UserError):
    """An image larger than the caller allows."""


def check_pixels(path: str | os.PathLike, width: int, height: int, max_pixels: int) -> None:
    """``TooManyPixels`` when a ``width`` x ``height`` image has more than ``max_pixels`` pixels."""
    if width * height > max_pixels:
        raise TooManyPixels(
            f"image {path} is {width}x{height} = {width * height:,} pixels, more than the {max_pixels:,} allowed"
        )


def read_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read ``path`` -> ndarray[H, W, 3] uint8 RGB, EXIF orientation applied.

    Raises ``UserError`` for a missing, unreadable, truncated or non-image file, and for an image of more than
    ``max_pixels`` pixels (checked before decoding).
    """
    path = Path(path)
    with _open(path) as image:
        check_pixels(path, *image.size, max_pixels)
        image.load()  # decode now, so a truncated file fails here and not later
        return to_rgb_array(ImageOps.exif_transpose(image))


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


def checked_images_dir(images_dir: str | os.PathLike) -> Path:
    """A given images folder -> its Path; ``ArgumentError`` (``images_dir``) when it is not a folder."""
    if not Path(images_dir).is_dir():
        raise ArgumentError("images_dir", f"images folder not found ({{arg}}): {images_dir}")
    return Path(images_dir)


def image_folders(annotations_path: str | os.PathLike) -> list[Path]:
    """Where the images of an annotation file may be, in order: its folder, then its ``images/`` and ``JPEGImages/``
    subfolders."""
    base = Path(annotations_path).parent
    return [base] + [base / sub for sub in IMAGE_SUBFOLDERS]


def guess_images_dir(annotations_path: str | os.PathLike, file_names: list[str]) -> Path | None:
    """The folder of ``image_folders`` that the images' ``file_name``s are relative to: the one holding the most of
    the first 20 (ties go to the earlier) -> that folder, or None when none holds any of them (or there are none)."""
    sample = file_names[:20]
    if not sample:
        return None
    candidates = image_folders(annotations_path)
    found = [sum(os.path.isfile(folder / name) for name in sample) for folder in candidates]
    best = max(range(len(candidates)), key=lambda i: (found[i], -i))
    return candidates[best] if found[best] else None


def find_images_dir(annotations_path: str | os.PathLike, file_names: list[str]) -> Path:
    """``guess_images_dir``, or the annotation file's folder when there are no images. When no folder holds any of
    them: an ``ArgumentError`` naming the file, an image and the folders looked in, that asks for ``images_dir``."""
    found = guess_images_dir(annotations_path, file_names)
    if found is not None:
        return found
    if not file_names:
        return Path(annotations_path).parent
    looked = ", ".join(str(c) for c in image_folders(annotations_path))
    raise ArgumentError(
        "images_dir",
        f"cannot find the images of {annotations_path} (e.g. {file_names[0]!r}): looked in {looked}; "
        "give the images folder as {arg}",
    )
