"""Fetch the mask PNGs of chosen instances out of the 16 remote shard zips, into a cache of PNG files.

The masks of image ``0a1b...`` are in ``{split}-masks-0.zip``. For each shard with a mask still missing, the zip's
central directory is read with Range requests (and cached as ``<shard>.zip.dir``), then only the wanted members'
bytes, in parallel. A server that ignores Range gets the whole shard downloaded once (cached as ``<shard>.zip``)
and read locally.

Outcomes per mask, kept on disk so that a re-run decides the same without fetching anything:
- ``masks/{split}/{MaskPath}``: the PNG, checked against the zip's CRC-32 and decoded once;
- ``masks/{split}/{MaskPath}.bad``: a one-line reason when the mask is permanently unusable (a corrupt member, not a
  PNG, not in its shard);
- neither: a network failure after retries (reported in ``MaskFetch.failed``; the next run tries again).
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from maskrcnn.data.openimages.coco_writer import decode_mask_png
from maskrcnn.data.openimages.csv_filter import MaskRow
from maskrcnn.data.openimages.layout import base_url, cache_root, mask_cache_dir, mask_shard, shard_of
from maskrcnn.data.openimages.remote_zip import (
    CorruptMember,
    FileSource,
    HttpSource,
    ZipEntry,
    ZipFormatError,
    ZipReader,
)
from maskrcnn.errors import ArgumentError
from maskrcnn.http import FetchError, HttpClient, RangeNotHonoured, host_of
from maskrcnn.io import atomic_write_bytes

UNREACHABLE_AFTER = 3


@dataclass
class MaskFetch:
    """``failed``: MaskPath -> reason, for masks that could not be fetched this time (network, broken zip)."""

    fetched: int = 0
    reused: int = 0
    unusable: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    whole_shards: list[str] = field(default_factory=list)


def read_cached_mask(output_dir: Path, split: str, row: MaskRow) -> bytes | str:
    """The cached PNG bytes of ``row``'s mask, or why there are none (the ``.bad`` reason, or "not fetched")."""
    path = mask_cache_dir(output_dir, split) / row.mask_path
    if path.is_file():
        return path.read_bytes()
    bad = path.with_name(path.name + ".bad")
    if bad.is_file():
        return bad.read_text(encoding="utf-8").strip()
    return "not fetched"


def fetch_masks(
    rows: list[MaskRow],
    *,
    http: HttpClient,
    annotations_url: str,
    split: str,
    output_dir: Path,
    workers: int,
    progress: bool = False,
) -> MaskFetch:
    """Make every row's mask cached as a PNG or marked ``.bad``, except those whose fetch failed (see module doc)."""
    cache = mask_cache_dir(output_dir, split)
    result = MaskFetch()
    by_shard: dict[str, list[MaskRow]] = defaultdict(list)
    for row in rows:
        target = cache / row.mask_path
        if target.is_file() or target.with_name(target.name + ".bad").is_file():
            result.reused += 1
        elif (shard := shard_of(row.image_id)) is None:
            _mark_bad(cache, row.mask_path, f"ImageID {row.image_id} does not start with a hex digit: no mask shard")
            result.unusable += 1
        else:
            by_shard[shard].append(row)
    if not by_shard:
        return result
    bar = tqdm(total=sum(map(len, by_shard.values())), desc="masks", unit="mask", disable=not progress, leave=False)
    pool = ThreadPoolExecutor(max_workers=workers)
    guard = _UnreachableGuard()
    try:
        opened = {s: pool.submit(_open_shard, http, annotations_url, split, s, output_dir, progress) for s in by_shard}
        groups: dict[Future, list[ZipEntry]] = {}
        for shard, future in opened.items():
            names = {row.mask_path for row in by_shard[shard]}
            try:
                reader, whole = future.result()
            except (FetchError, ZipFormatError) as e:
                guard.failure(e, done=result.fetched)
                result.failed.update({name: f"shard {shard}: {e}" for name in names})
                bar.update(len(names))
                continue
            if whole:
                result.whole_shards.append(shard)
            entries = reader.find(names)
            for name in sorted(names - entries.keys()):
                _mark_bad(cache, name, f"not in {mask_shard(split, shard)}")
                result.unusable += 1
                bar.update(1)
            for start, stop, group in reader.plan(list(entries.values())):
                groups[pool.submit(_fetch_group, reader, start, stop, group, cache)] = group
        for future in as_completed(groups):
            group = groups[future]
            bar.update(len(group))
            try:
                good = future.result()
            except (FetchError, RangeNotHonoured) as e:
                reason = str(e) if isinstance(e, FetchError) else f"{e}: Range requests refused midway"
                guard.failure(e, done=result.fetched)
                result.failed.update({entry.name: reason for entry in group})
                continue
            result.fetched += good
            result.unusable += len(group) - good
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    return result


class _UnreachableGuard:
    """Stops the run when the first few failures got no HTTP answer at all and nothing succeeded."""

    def __init__(self) -> None:
        self.count = 0

    def failure(self, error: Exception, *, done: int) -> None:
        if isinstance(error, FetchError) and error.unreachable:
            self.count += 1
            if self.count >= UNREACHABLE_AFTER and done == 0:
                raise ArgumentError(
                    "annotations_url",
                    f"cannot download masks from {host_of(error.url)}: {error.reason}. Check the network, or set "
                    "{arg} to a mirror with the same v5/ layout",
                )


def _open_shard(
    http: HttpClient, annotations_url: str, split: str, shard: str, output_dir: Path, progress: bool
) -> tuple[ZipReader, bool]:
    """The shard's reader, and whether the whole zip had to be downloaded."""
    relative = mask_shard(split, shard)
    url = base_url(annotations_url) + relative
    whole_zip = cache_root(output_dir) / relative
    directory_cache = whole_zip.with_name(whole_zip.name + ".dir")
    if not whole_zip.is_file():
        try:
            source = HttpSource(http, url, whole_file=whole_zip, progress=progress)
            return _open_cached(source, directory_cache), False
        except RangeNotHonoured:
            if not whole_zip.is_file():  # Range refused after all, later than the first request
                http.download(url, whole_zip, progress=progress, desc=whole_zip.name)
    try:
        return _open_cached(FileSource(whole_zip), None), True
    except ZipFormatError as e:
        whole_zip.unlink(missing_ok=True)  # fetch it again next time
        raise ZipFormatError(f"{url} is not a readable zip ({e})") from None


def _open_cached(source: HttpSource | FileSource, directory_cache: Path | None) -> ZipReader:
    try:
        return ZipReader.open(source, directory_cache=directory_cache)
    except ZipFormatError:
        if directory_cache is None or not directory_cache.is_file():
            raise
        directory_cache.unlink()  # a damaged cache: read the directory from the source again
        return ZipReader.open(source, directory_cache=directory_cache)


def _fetch_group(reader: ZipReader, start: int, stop: int, group: list[ZipEntry], cache: Path) -> int:
    """Fetch one byte range, cache its good PNGs and mark the bad ones; returns how many were good."""
    good = 0
    for entry, data in reader.read_group(start, stop, group):
        if isinstance(data, CorruptMember):
            _mark_bad(cache, entry.name, f"corrupt zip member ({data})")
            continue
        try:
            decode_mask_png(data)
        except ValueError as e:
            _mark_bad(cache, entry.name, f"corrupt mask PNG ({e})")
            continue
        atomic_write_bytes(cache / entry.name, data)
        good += 1
    return good


def _mark_bad(cache: Path, name: str, reason: str) -> None:
    atomic_write_bytes(cache / f"{name}.bad", reason.encode("utf-8") + b"\n")
