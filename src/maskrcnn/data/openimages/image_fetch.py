"""Download Open Images JPEGs in parallel into ``DIR/images/<ImageID>.jpg``, skipping the ones already there.

An image is streamed to a temporary file and renamed into place only once it has arrived whole and decodes, so a
file present in ``DIR/images`` is complete and is never fetched again. An image larger than ``MAX_IMAGE_BYTES``
(50 MiB; Open Images JPEGs are a few MiB at most) is refused, without reading it when the server announces its size,
so a broken or hostile mirror costs at most that much disk and a chunk of memory per worker.

A download that still fails after the retries is reported in ``ImageFetch.failed`` and the others go on; when the
first several fail without any answer from the host and none succeeded, the host is taken to be unreachable and a
``UserError`` stops the run.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from maskrcnn.data.images import image_size
from maskrcnn.data.openimages.layout import image_path, image_url
from maskrcnn.errors import ArgumentError, UserError
from maskrcnn.http import FetchError, HttpClient, host_of

UNREACHABLE_AFTER = 3  # this many failures without any HTTP answer, and no success: stop
MAX_IMAGE_BYTES = 50 << 20


@dataclass
class ImageFetch:
    """``sizes``: ImageID -> (W, H) of every image now present; ``failed``: ImageID -> reason."""

    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    fetched: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)


def fetch_images(
    image_ids: list[str],
    *,
    http: HttpClient,
    images_url: str,
    split: str,
    output_dir: Path,
    workers: int,
    progress: bool = False,
) -> ImageFetch:
    """Make ``output_dir/images/<id>.jpg`` exist for each of ``image_ids`` (from ``{images_url}{split}/<id>.jpg``)."""
    result = ImageFetch()
    todo = []
    for image_id in image_ids:
        size = _existing_size(image_path(output_dir, image_id))
        if size is None:
            todo.append(image_id)
        else:
            result.sizes[image_id] = size
            result.reused += 1
    if not todo:
        return result
    bar = tqdm(total=len(todo), desc="images", unit="img", disable=not progress, leave=False)
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        futures = {
            pool.submit(_fetch_one, http, image_url(images_url, split, i), image_path(output_dir, i)): i for i in todo
        }
        unreachable = 0
        for future in as_completed(futures):
            image_id = futures[future]
            bar.update(1)
            try:
                result.sizes[image_id] = future.result()
                result.fetched += 1
            except FetchError as e:
                result.failed[image_id] = str(e)
                unreachable += e.unreachable
                if unreachable >= UNREACHABLE_AFTER and result.fetched == 0:
                    raise ArgumentError(
                        "images_url",
                        f"cannot download images from {host_of(e.url)}: {e.reason}. Check the network, or set "
                        f"{{arg}} to a mirror laid out as URL/{split}/<ImageID>.jpg",
                    ) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    return result


def _existing_size(path: Path) -> tuple[int, int] | None:
    if not path.is_file():
        return None
    try:
        return image_size(path)
    except UserError:
        return None  # not an image (written by someone else?): fetch it again


def _fetch_one(http: HttpClient, url: str, path: Path) -> tuple[int, int]:
    http.download(url, path, max_bytes=MAX_IMAGE_BYTES, validate=_check_image)
    return image_size(path)


def _check_image(path: Path) -> None:
    """ValueError unless ``path`` decodes whole (a JPEG at 1/8 scale: every byte is still read and checked, in a
    64th of the memory)."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"not a decodable image: {e}") from None
