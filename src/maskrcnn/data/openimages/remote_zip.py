"""Read a few members of a big zip file without fetching all of it: the end record, the central directory, then
only the byte ranges of the wanted members.

A zip ends with the End Of Central Directory record (EOCD, 22 bytes plus a comment; for more than 65535 members or
offsets past 4 GiB also a ZIP64 EOCD record and locator before it). The EOCD gives the central directory's offset
and size; each directory entry gives a member's name, sizes, CRC-32, compression method and the offset of its local
header; the local header (30 bytes, its name, its own extra field) is followed by the member's bytes.

So reading k members of a remote zip costs: one suffix-Range request for the last 8 KiB (64 KiB more when a long
comment hides the end record), one for the rest of the central directory when it is longer, and one per run of
nearby members (members closer than ``max_gap`` are read in one request). The bytes come from a ``ByteSource``:
``HttpSource`` (Range requests) or ``FileSource`` (a local file, for a shard fetched whole or already on disk).

>>> reader = ZipReader.open(HttpSource(http, url), directory_cache=Path("train-masks-0.zip.dir"))
>>> entries = reader.find({"0a1b..._m01yrx_3c4d.png"})
>>> for entry, data in reader.read(list(entries.values())):
...     ...   # data: the member's bytes, or a CorruptMember saying why not
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from maskrcnn.http import HttpClient
from maskrcnn.io import atomic_write_bytes

_EOCD = struct.Struct("<4s4H2IH")  # signature, disk, cd disk, entries here, entries, cd size, cd offset, comment len
_ZIP64_LOCATOR = struct.Struct("<4sIQI")  # signature, disk, ZIP64 EOCD offset, disks
_ZIP64_EOCD = struct.Struct("<4sQ2H2I4Q")  # signature, size, versions x2, disks x2, entries x2, cd size, cd offset
_CENTRAL = struct.Struct("<4s6H3I5H2I")  # see ZipEntry; 46 bytes
_LOCAL = struct.Struct("<4s5H3I2H")  # signature, version, flags, method, time, date, crc, sizes x2, name/extra len
_SIG_EOCD, _SIG_LOCATOR, _SIG_ZIP64 = b"PK\x05\x06", b"PK\x06\x07", b"PK\x06\x06"
_SIG_CENTRAL, _SIG_LOCAL = b"PK\x01\x02", b"PK\x03\x04"
_CACHE_MAGIC = b"ZIPDIR01"

FIRST_TAIL_BYTES = 8192  # the end records, unless the zip has a long comment
TAIL_BYTES = 65536 + _EOCD.size + _ZIP64_LOCATOR.size + _ZIP64_EOCD.size  # EOCD with the longest comment, ZIP64
LOCAL_SLACK = 1024  # a local header's extra field may be longer than the central one; read this much more
MAX_MEMBER_BYTES = 256 << 20  # refuse to inflate a member larger than this (a mask PNG is a few KiB)


class ZipFormatError(ValueError):
    """The file is not a zip we can read (no end record, a broken central directory)."""


class CorruptMember(ValueError):
    """One member cannot be read (bad local header, CRC mismatch, bad deflate data, encrypted, ...)."""


@dataclass(frozen=True)
class ZipEntry:
    """One central-directory entry. Offsets are absolute in the file; ``extra_len`` is the central extra's length."""

    name: str
    header_offset: int
    compressed_size: int
    uncompressed_size: int
    method: int
    crc: int
    flags: int
    extra_len: int


class ByteSource(Protocol):
    def tail(self, length: int) -> tuple[bytes, int]:
        """The last ``length`` bytes (or all) and the total size."""

    def read(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)``."""


class HttpSource:
    """A remote file read with Range requests; ``tail`` raises ``RangeNotHonoured`` when the server ignores them,
    after saving the whole file it sent to ``whole_file`` when that is given."""

    def __init__(self, http: HttpClient, url: str, *, whole_file: Path | None = None, progress: bool = False):
        self.http = http
        self.url = url
        self.whole_file = whole_file
        self.progress = progress

    def tail(self, length: int) -> tuple[bytes, int]:
        return self.http.get_tail(self.url, length, whole_file=self.whole_file, progress=self.progress)

    def read(self, start: int, stop: int) -> bytes:
        return self.http.get(self.url, byte_range=(start, stop))


class FileSource:
    """A local file."""

    def __init__(self, path: Path):
        self.path = path

    def tail(self, length: int) -> tuple[bytes, int]:
        with open(self.path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - length))
            return f.read(), size

    def read(self, start: int, stop: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(start)
            return f.read(stop - start)


def locate_central_directory(
    tail: bytes, *, tail_offset: int, source: ByteSource | None = None
) -> tuple[int, int, int]:
    """From the last bytes of a zip (starting at ``tail_offset`` in the file) -> (offset, size, prepended): where
    its central directory is in the file, its length, and how many bytes precede the zip proper (a self-extractor
    stub; usually 0), which every offset written in the zip must be shifted by. Reads the ZIP64 end record from
    ``source`` when it lies before ``tail``."""
    pos = tail.rfind(_SIG_EOCD)
    while pos >= 0 and pos + _EOCD.size + _EOCD.unpack_from(tail, pos)[-1] != len(tail):
        pos = tail.rfind(_SIG_EOCD, 0, pos)  # a signature inside the comment, or trailing bytes: look further back
    if pos < 0 or pos + _EOCD.size > len(tail):
        raise ZipFormatError("no end-of-central-directory record (not a zip file, or truncated)")
    _, _, _, _, _, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, pos)
    end_of_cd = tail_offset + pos  # where the central directory should end if nothing is prepended
    locator = pos - _ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator : locator + 4] == _SIG_LOCATOR:
        # The ZIP64 record sits just before its locator (the offset the locator gives ignores prepended bytes).
        rel = locator - _ZIP64_EOCD.size
        if rel >= 0:
            record = tail[rel:locator]
        elif source is not None and tail_offset + rel >= 0:
            record = source.read(tail_offset + rel, tail_offset + locator)
        else:
            raise ZipFormatError("ZIP64 end record outside the bytes read")
        if len(record) != _ZIP64_EOCD.size or record[:4] != _SIG_ZIP64:
            raise ZipFormatError("broken ZIP64 end-of-central-directory record")
        *_, cd_size, cd_offset = _ZIP64_EOCD.unpack(record)
        end_of_cd = tail_offset + rel
    prepended = end_of_cd - cd_size - cd_offset  # bytes before the zip proper (a self-extractor stub), usually 0
    if prepended < 0:
        raise ZipFormatError("central directory offsets point past its end record")
    return cd_offset + prepended, cd_size, prepended


def parse_central_directory(data: bytes, *, wanted: set[str] | None = None, prepended: int = 0) -> dict[str, ZipEntry]:
    """Central directory bytes -> {name: ZipEntry} for the names in ``wanted`` (all when None); first entry wins.

    ``prepended`` is added to every local-header offset (bytes before the zip proper).
    """
    entries: dict[str, ZipEntry] = {}
    pos, end = 0, len(data)
    while pos + _CENTRAL.size <= end:
        (sig, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len, _, _, _, offset) = (
            _CENTRAL.unpack_from(data, pos)
        )
        if sig != _SIG_CENTRAL:
            raise ZipFormatError(f"broken central directory at byte {pos}")
        name_start = pos + _CENTRAL.size
        raw_name = data[name_start : name_start + name_len]
        next_pos = name_start + name_len + extra_len + comment_len
        if next_pos > end:
            raise ZipFormatError("central directory truncated")
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        if (wanted is None or name in wanted) and name not in entries:
            extra = data[name_start + name_len : name_start + name_len + extra_len]
            usize, csize, offset = _apply_zip64_extra(extra, usize, csize, offset)
            entries[name] = ZipEntry(
                name=name,
                header_offset=offset + prepended,
                compressed_size=csize,
                uncompressed_size=usize,
                method=method,
                crc=crc,
                flags=flags,
                extra_len=extra_len,
            )
        pos = next_pos
    return entries


def _apply_zip64_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Replace the 0xFFFFFFFF placeholders by the 64-bit values of the ZIP64 extra field (id 1), in its order."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            values = list(struct.unpack_from(f"<{size // 8}Q", extra, pos + 4))
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
            if offset == 0xFFFFFFFF and values:
                offset = values.pop(0)
            break
        pos += 4 + size
    return usize, csize, offset


def plan_reads(
    entries: list[ZipEntry], *, data_end: int, max_gap: int = 16 << 10, max_span: int = 8 << 20
) -> list[tuple[int, int, list[ZipEntry]]]:
    """Group entries into byte ranges ``(start, stop, entries)``: entries whose local records are at most
    ``max_gap`` bytes apart share a range, up to ``max_span`` bytes. ``data_end``: where member data ends (the
    central directory's offset).

    >>> [(a, b, len(es)) for a, b, es in plan_reads(es, data_end=10**6)]  # members at 0, 5000 and 900000
    [(0, 7100, 2), (900000, 902050, 1)]
    """
    groups: list[tuple[int, int, list[ZipEntry]]] = []
    for entry in sorted(entries, key=lambda e: e.header_offset):
        start = entry.header_offset
        stop = min(data_end, _estimated_end(entry))
        if groups and start - groups[-1][1] <= max_gap and stop - groups[-1][0] <= max_span:
            g_start, g_stop, members = groups[-1]
            groups[-1] = (g_start, max(g_stop, stop), members + [entry])
        else:
            groups.append((start, max(stop, start + _LOCAL.size), [entry]))
    return groups


def _estimated_end(entry: ZipEntry) -> int:
    name_len = len(entry.name.encode("utf-8" if entry.flags & 0x800 else "cp437", errors="replace"))
    return entry.header_offset + _LOCAL.size + name_len + entry.extra_len + entry.compressed_size + LOCAL_SLACK


def inflate(entry: ZipEntry, raw: bytes) -> bytes:
    """A member's stored bytes -> its content, checked against its size and CRC-32. Raises ``CorruptMember``."""
    if entry.flags & 0x1:
        raise CorruptMember(f"{entry.name}: encrypted member")
    if entry.uncompressed_size > MAX_MEMBER_BYTES:
        raise CorruptMember(f"{entry.name}: {entry.uncompressed_size} bytes once inflated, more than allowed")
    if len(raw) != entry.compressed_size:
        raise CorruptMember(f"{entry.name}: {len(raw)} of {entry.compressed_size} stored bytes")
    if entry.method == 0:
        data = raw
    elif entry.method == 8:
        try:
            inflater = zlib.decompressobj(-15)
            data = inflater.decompress(raw, entry.uncompressed_size + 1)
        except zlib.error as e:
            raise CorruptMember(f"{entry.name}: bad deflate data ({e})") from None
    else:
        raise CorruptMember(f"{entry.name}: unsupported compression method {entry.method}")
    if len(data) != entry.uncompressed_size:
        raise CorruptMember(f"{entry.name}: {len(data)} bytes, expected {entry.uncompressed_size}")
    if zlib.crc32(data) != entry.crc:
        raise CorruptMember(f"{entry.name}: CRC-32 mismatch")
    return data


class ZipReader:
    """Members of one zip, read from a ``ByteSource``. Build it with ``ZipReader.open``."""

    def __init__(self, source: ByteSource, *, directory: bytes, directory_offset: int, prepended: int):
        self.source = source
        self._directory = directory
        self.directory_offset = directory_offset  # also where member data ends
        self._prepended = prepended

    @classmethod
    def open(cls, source: ByteSource, *, directory_cache: Path | None = None) -> ZipReader:
        """Read the end records and the central directory (from ``directory_cache`` when it holds them; otherwise
        from ``source``, then saved there). Raises ``ZipFormatError``, or the source's own errors."""
        if directory_cache is not None and directory_cache.is_file():
            cached = _load_directory_cache(directory_cache)
            if cached is not None:
                tail, tail_offset = cached
                return cls._from_tail(source, tail, tail_offset)
        tail, size = source.tail(FIRST_TAIL_BYTES)
        try:
            cd_offset, _, _ = locate_central_directory(tail, tail_offset=size - len(tail), source=source)
        except ZipFormatError:
            if len(tail) == size:
                raise
            tail, size = source.tail(TAIL_BYTES)  # a long zip comment: read as far back as the format allows
            cd_offset, _, _ = locate_central_directory(tail, tail_offset=size - len(tail), source=source)
        tail_offset = size - len(tail)
        if cd_offset < tail_offset:
            head = source.read(cd_offset, tail_offset)
            if len(head) != tail_offset - cd_offset:
                raise ZipFormatError(f"central directory cut short ({len(head)} of {tail_offset - cd_offset} bytes)")
            tail, tail_offset = head + tail, cd_offset
        elif cd_offset > tail_offset:
            tail, tail_offset = tail[cd_offset - tail_offset :], cd_offset
        if directory_cache is not None:
            atomic_write_bytes(directory_cache, _CACHE_MAGIC + struct.pack("<Q", tail_offset) + tail)
        return cls._from_tail(source, tail, tail_offset)

    @classmethod
    def _from_tail(cls, source: ByteSource, tail: bytes, tail_offset: int) -> ZipReader:
        cd_offset, cd_size, prepended = locate_central_directory(tail, tail_offset=tail_offset, source=source)
        rel = cd_offset - tail_offset
        if rel < 0 or rel + cd_size > len(tail):
            raise ZipFormatError("central directory outside the bytes read")
        return cls(source, directory=tail[rel : rel + cd_size], directory_offset=cd_offset, prepended=prepended)

    def find(self, names: set[str]) -> dict[str, ZipEntry]:
        """The entries of ``names`` present in this zip."""
        return parse_central_directory(self._directory, wanted=names, prepended=self._prepended)

    def read(self, entries: list[ZipEntry]) -> Iterator[tuple[ZipEntry, bytes | CorruptMember]]:
        """Each entry with its content or the ``CorruptMember`` saying why not, reading nearby members together.
        Errors of the source itself (a failed download) propagate."""
        for start, stop, group in self.plan(entries):
            yield from self.read_group(start, stop, group)

    def plan(self, entries: list[ZipEntry]) -> list[tuple[int, int, list[ZipEntry]]]:
        """The byte ranges ``read`` would fetch, for callers that fetch them in parallel with ``read_group``."""
        return plan_reads(entries, data_end=self.directory_offset)

    def read_group(
        self, start: int, stop: int, group: list[ZipEntry]
    ) -> list[tuple[ZipEntry, bytes | CorruptMember]]:
        """One range of ``plan``: fetch ``[start, stop)`` and cut its members out of it."""
        buf = self.source.read(start, stop)
        return [(entry, self._member(entry, buf, start)) for entry in group]

    def _member(self, entry: ZipEntry, buf: bytes, buf_offset: int) -> bytes | CorruptMember:
        pos = entry.header_offset - buf_offset
        if pos + _LOCAL.size > len(buf):
            return CorruptMember(f"{entry.name}: local header past the end of the file")
        sig, _, _, _, _, _, _, _, _, name_len, extra_len = _LOCAL.unpack_from(buf, pos)
        if sig != _SIG_LOCAL:
            return CorruptMember(f"{entry.name}: no local header at offset {entry.header_offset}")
        data_start = entry.header_offset + _LOCAL.size + name_len + extra_len
        data_stop = data_start + entry.compressed_size
        if data_stop - buf_offset <= len(buf):
            raw = buf[data_start - buf_offset : data_stop - buf_offset]
        else:  # the local extra field was longer than guessed: fetch the member's bytes on their own
            raw = self.source.read(data_start, data_stop)
        try:
            return inflate(entry, raw)
        except CorruptMember as e:
            return e


def _load_directory_cache(path: Path) -> tuple[bytes, int] | None:
    data = path.read_bytes()
    if not data.startswith(_CACHE_MAGIC) or len(data) < len(_CACHE_MAGIC) + 8:
        return None
    (tail_offset,) = struct.unpack_from("<Q", data, len(_CACHE_MAGIC))
    return data[len(_CACHE_MAGIC) + 8 :], tail_offset
