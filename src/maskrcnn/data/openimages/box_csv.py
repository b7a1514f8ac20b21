"""The box CSV: every box of a split, streamed from the server and cut down to the chosen images' rows.

The train file (``v6/oidv6-train-annotations-bbox.csv``) has 14.6M rows, 2.2 GB; neither memory nor disk ever holds
it whole. It is read in ``CHUNK``-byte Range requests; each chunk's complete lines are filtered at once and only the
lines of the chosen images are appended to ``DIR/.openimages/boxes/{split}-{key}.csv.part``. Every
``PROGRESS_EVERY`` bytes the position reached is saved (``.progress``, atomically), so a run that fails or is
killed mid-stream continues from there next time; the part file becomes ``{split}-{key}.csv`` when the stream ends. ``key`` is a hash of the chosen
ImageIDs: the same choice reuses the file without fetching anything. A server that ignores Range requests gets the
file downloaded whole once into a temporary file, which is filtered the same way and deleted.

Columns (by name, any order; the file has more): ``ImageID,LabelName,XMin,XMax,YMin,YMax,IsGroupOf``, box
coordinates normalised to [0, 1]. A line is kept when its ImageID is chosen: with ImageID the first column (as in
the real files) that is a prefix test on the raw bytes, so the filter runs at millions of lines per second.

>>> stream = fetch_box_csv(http, url, DIR / ".openimages/boxes/validation-1a2b.csv", image_ids={"0001eeaf4aed83f9"})
>>> read_box_rows(stream.path, labels={"/m/01yrx"}, source="validation-annotations-bbox.csv")[0]
BoxRow(image_id='0001eeaf4aed83f9', label='/m/01yrx', box=(0.0125, 0.9875, 0.2, 1.0), group_of=False)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from maskrcnn.data.openimages.csv_filter import candidate_lines, read_header
from maskrcnn.data.openimages.layout import safe_image_id
from maskrcnn.data.openimages.remote_zip import ByteSource, FileSource, HttpSource
from maskrcnn.errors import UserError
from maskrcnn.http import FetchError, HttpClient, RangeNotHonoured
from maskrcnn.io import atomic_write_json

COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax", "IsGroupOf")
CHUNK = 8 << 20  # bytes per Range request: memory stays a few chunks whatever the file's size
PROGRESS_EVERY = 64 << 20  # bytes streamed between two saves of the progress (each save is an fsync)


class BoxRow(NamedTuple):
    """One box: its image, class MID, (XMin, XMax, YMin, YMax) normalised to [0, 1], and whether it is group-of."""

    image_id: str
    label: str
    box: tuple[float, float, float, float]
    group_of: bool


@dataclass
class BoxStream:
    """What fetching the box CSV did. ``path``: the chosen images' rows (a small CSV with the original header)."""

    path: Path
    rows_scanned: int = 0  # lines of the remote file filtered by this run
    rows_kept: int = 0  # lines of chosen images among them
    reused: bool = False  # the rows were already there: nothing fetched
    resumed_at: int = 0  # the byte the stream started at (> 0: an earlier run's progress was continued)
    whole_file: bool = False  # the server ignored Range: the file was downloaded whole, filtered, deleted


def selection_key(image_ids: Iterable[str]) -> str:
    """16 hex digits naming a set of ImageIDs (the cache file of their rows)."""
    digest = hashlib.blake2b(digest_size=8)
    for image_id in sorted(image_ids):
        digest.update(image_id.encode() + b"\n")
    return digest.hexdigest()


class LineFilter:
    """Keeps the CSV lines (bytes) whose ImageID is one of ``image_ids``; ``header``: the file's column names."""

    def __init__(self, header: list[str], image_ids: Iterable[str]):
        self.column = header.index("ImageID")
        self.ids = {i.encode() for i in image_ids}
        self.lengths = sorted({len(i) for i in self.ids})

    def keep(self, data: bytes, start: int = 0) -> list[bytes]:
        """The kept lines of ``data[start:]`` (lines end with a newline, but perhaps the last)."""
        ids = self.ids
        lines = io.BytesIO(data)  # shares ``data``'s buffer: no copy
        lines.seek(start)
        if self.column != 0:
            column = self.column
            return [line for line in lines if line.split(b",", column + 1)[column] in ids]
        if len(self.lengths) == 1:
            (n,) = self.lengths
            return [line for line in lines if line[:n] in ids and line[n : n + 1] == b","]
        return [line for line in lines if any(line[:n] in ids and line[n : n + 1] == b"," for n in self.lengths)]


def fetch_box_csv(
    http: HttpClient, url: str, dest: Path, *, image_ids: set[str], name: str, progress: bool = False
) -> BoxStream:
    """Make ``dest`` hold the rows of ``image_ids`` from the box CSV at ``url`` (see the module doc); ``name``
    names the file in messages. ``UserError`` for a file that is not a box CSV or cannot be fetched (naming it and
    keeping what was streamed)."""
    if dest.is_file():
        return BoxStream(path=dest, reused=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    whole = dest.with_name(dest.name + ".whole")
    source: ByteSource = HttpSource(http, url, whole_file=whole, progress=progress)
    try:
        try:
            _, size = source.tail(1)
            whole_file = False
        except RangeNotHonoured:
            if not whole.is_file():  # Range refused after all, later than the first request
                http.download(url, whole, progress=progress, desc=name)
            source, size, whole_file = FileSource(whole), whole.stat().st_size, True
        stream = filter_stream(source, size, dest, image_ids=image_ids, name=name, progress=progress)
    except FetchError as e:
        part = dest.with_name(dest.name + ".part")
        kept = f"; the {_mib(part.stat().st_size)} of its rows streamed so far are kept" if part.is_file() else ""
        raise UserError(f"cannot download {name} from {e.url}: {e.reason}{kept}. Run the same command again to "
                        "continue") from None  # fmt: skip
    finally:
        whole.unlink(missing_ok=True)
    stream.whole_file = whole_file
    return stream


def filter_stream(
    source: ByteSource, size: int, dest: Path, *, image_ids: set[str], name: str, progress: bool = False
) -> BoxStream:
    """Read ``source`` (``size`` bytes) chunk by chunk into ``dest``: its header and the lines of ``image_ids``,
    continuing from the progress an earlier call saved for the same source size."""
    part = dest.with_name(dest.name + ".part")
    state_path = dest.with_name(dest.name + ".progress")
    state = _load_state(state_path, size=size, part=part)
    stream = BoxStream(path=dest, resumed_at=state["offset"])
    header, pending = state["header"], b""
    line_filter = None if header is None else LineFilter(header, image_ids)
    offset = saved = state["offset"]  # bytes of the source consumed: every line before it is filtered
    with open(part, "ab") as out, tqdm(
        total=size, initial=offset, desc=name, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
        leave=False,
    ) as bar:  # fmt: skip
        out.truncate(state["part_bytes"])
        while offset + len(pending) < size:
            start = offset + len(pending)
            body = source.read(start, min(start + CHUNK, size))
            if not body:
                raise FetchError(name, f"the file ended at byte {start} of {size}")
            bar.update(len(body))
            data = pending + body
            at_end = offset + len(data) >= size
            end = len(data) if at_end else data.rfind(b"\n") + 1  # complete lines only, unless the file ends
            if end == 0:
                pending = data  # a line longer than a chunk: read on
                continue
            begin = 0
            if line_filter is None:  # the first chunk: the header
                begin = data.find(b"\n") + 1 or len(data)
                header = _parse_header(data[:begin], name=name)
                line_filter = LineFilter(header, image_ids)
                out.write(data[:begin].rstrip(b"\r\n") + b"\n")
            kept = line_filter.keep(data, begin)
            if kept and not at_end and not kept[-1].endswith(b"\n"):
                kept.pop()  # the incomplete last line: it comes again with the next chunk
            out.writelines(line if line.endswith(b"\n") else line + b"\n" for line in kept)
            stream.rows_scanned += _count_lines(data, begin, end)
            stream.rows_kept += len(kept)
            offset, pending = offset + end, data[end:]
            if offset - saved >= PROGRESS_EVERY or at_end:
                out.flush()
                atomic_write_json(state_path, {"size": size, "offset": offset, "part_bytes": out.tell(),
                                               "header": header})  # fmt: skip
                saved = offset
        if line_filter is None:
            raise UserError(f"{name} is empty (expected an Open Images box CSV with a header row)")
    os.replace(part, dest)
    state_path.unlink(missing_ok=True)
    return stream


def _count_lines(data: bytes, begin: int, end: int) -> int:
    """Lines in ``data[begin:end]``, the last one counted even without its newline (numpy: several times faster
    than ``bytes.count``)."""
    text = np.frombuffer(data, dtype=np.uint8, count=end)[begin:]
    return int(np.count_nonzero(text == 10)) + int(end > begin and data[end - 1] != 10)


def _parse_header(line: bytes, *, name: str) -> list[str]:
    try:
        text = line.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{name}: not an Open Images box CSV (its first line is not text)") from None
    return read_header(iter([text]), source=name, required=COLUMNS, kind="box CSV")


def _load_state(path: Path, *, size: int, part: Path) -> dict:
    """An earlier run's progress for a source of ``size`` bytes, or a fresh start."""
    fresh = {"offset": 0, "part_bytes": 0, "header": None}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("size") == size and part.is_file() and part.stat().st_size >= state["part_bytes"]:
            return {"offset": int(state["offset"]), "part_bytes": int(state["part_bytes"]), "header": state["header"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return fresh


def read_box_rows(
    path: Path, *, labels: Iterable[str], source: str, problems: list[str] | None = None
) -> list[BoxRow]:
    """The rows of ``labels`` in a box CSV (the filtered one ``fetch_box_csv`` leaves, or a whole local file),
    read line by line. Unusable rows (too few columns, coordinates that are not numbers, an unsafe ImageID) are
    left out and described in ``problems`` as ``"{source}: ..."``. ``UserError`` when columns are missing."""
    wanted = frozenset(labels)
    rows: list[BoxRow] = []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            it = iter(f)
            header = read_header(it, source=source, required=COLUMNS, kind="box CSV")
            index = [header.index(c) for c in COLUMNS]
            width = max(index) + 1
            for _, line in candidate_lines(it, wanted):
                row = next(csv.reader([line]), [])
                if len(row) < width:
                    if problems is not None and line.strip():
                        problems.append(f"{source}: a row has {len(row)} columns, expected {len(header)}")
                    continue
                image_id, label, *coords, group_of = (row[i] for i in index)
                if label not in wanted:
                    continue
                try:
                    box = tuple(float(v) for v in coords)
                    if group_of not in ("0", "1"):
                        raise ValueError(f"IsGroupOf {group_of!r}")
                except ValueError as e:
                    if problems is not None:
                        problems.append(f"{source}: box of image {image_id} unusable ({e}), row skipped")
                    continue
                if not safe_image_id(image_id):
                    if problems is not None:
                        problems.append(f"{source}: ImageID {image_id!r} is not a plain file name, row skipped")
                    continue
                rows.append(BoxRow(image_id, label, box, group_of == "1"))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    return rows


def filter_box_file(path: Path, dest: Path, *, image_ids: set[str]) -> BoxStream:
    """``filter_stream`` of a local box CSV (``maskrcnn convert``)."""
    try:
        size = path.stat().st_size
        return filter_stream(FileSource(path), size, dest, image_ids=image_ids, name=path.name)
    except OSError as e:
        raise UserError(f"cannot read {path}: {e}") from None


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"
