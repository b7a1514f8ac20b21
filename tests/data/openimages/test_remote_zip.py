from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path

import pytest
from oi_server import MirrorServer

from maskrcnn.http import HttpClient, RangeNotHonoured, RetryPolicy
from maskrcnn.data.openimages.remote_zip import (
    CorruptMember,
    FileSource,
    HttpSource,
    ZipFormatError,
    ZipReader,
    plan_reads,
)


def _write_zip(path: Path, n: int, *, prefix: bytes = b"", seed: int = 0) -> dict[str, bytes]:
    rng = random.Random(seed)
    contents = {}
    buf = io.BytesIO()
    buf.write(prefix)
    with zipfile.ZipFile(buf, "a" if prefix else "w") as zf:
        for i in range(n):
            name = f"m{i:05d}.png"
            data = rng.randbytes(rng.randint(50, 3000)) + b"\0" * rng.randint(0, 2000)
            contents[name] = data
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED)
    path.write_bytes(buf.getvalue())
    return contents


@pytest.mark.parametrize("variant", ["plain", "zip64", "prepended"])
def test_members_match_zipfile(tmp_path, monkeypatch, variant):
    path = tmp_path / "a.zip"
    if variant == "zip64":
        # Force the ZIP64 end records and per-entry ZIP64 extras that the real 170k-member train shards need.
        monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 10)
        monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    contents = _write_zip(path, 200, prefix=b"#!stub\n" * 50 if variant == "prepended" else b"")
    monkeypatch.undo()
    if variant == "zip64":
        tail = path.read_bytes()[-200:]
        assert b"PK\x06\x06" in tail and b"PK\x06\x07" in tail  # really ZIP64
    wanted = {"m00000.png", "m00001.png", "m00002.png", "m00100.png", "m00199.png", "absent.png"}
    reader = ZipReader.open(FileSource(path))
    entries = reader.find(wanted)
    assert set(entries) == wanted - {"absent.png"}
    got = dict((e.name, data) for e, data in reader.read(list(entries.values())))
    with zipfile.ZipFile(path) as zf:  # the oracle
        assert got == {name: zf.read(name) for name in entries}
    assert all(got[name] == contents[name] for name in got)


def test_damaged_member_is_reported_not_returned(tmp_path):
    path = tmp_path / "a.zip"
    _write_zip(path, 10)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("m00004.png")  # stored
    data = bytearray(path.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF
    path.write_bytes(bytes(data))
    reader = ZipReader.open(FileSource(path))
    results = dict((e.name, d) for e, d in reader.read(list(reader.find({"m00004.png", "m00005.png"}).values())))
    assert isinstance(results["m00004.png"], CorruptMember) and "CRC-32 mismatch" in str(results["m00004.png"])
    assert isinstance(results["m00005.png"], bytes)


def test_not_a_zip(tmp_path):
    path = tmp_path / "a.zip"
    path.write_bytes(b"<html>proxy error</html>" * 100)
    with pytest.raises(ZipFormatError, match="no end-of-central-directory"):
        ZipReader.open(FileSource(path))


def test_nearby_members_share_a_request(tmp_path):
    path = tmp_path / "a.zip"
    _write_zip(path, 300)
    reader = ZipReader.open(FileSource(path))
    entries = reader.find({"m00010.png", "m00011.png", "m00012.png", "m00250.png"})
    groups = plan_reads(list(entries.values()), data_end=reader.directory_offset, max_gap=16 << 10)
    assert [sorted(e.name for e in g) for _, _, g in groups] == [
        ["m00010.png", "m00011.png", "m00012.png"],
        ["m00250.png"],
    ]
    for start, stop, group in groups:
        assert start == min(e.header_offset for e in group) and stop <= reader.directory_offset


def test_over_http_fetches_a_small_part_and_caches_the_directory(tmp_path):
    (tmp_path / "srv").mkdir()
    path = tmp_path / "srv" / "big.zip"
    contents = _write_zip(path, 600, seed=3)
    size = path.stat().st_size
    http = HttpClient(policy=RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=2))
    cache = tmp_path / "big.zip.dir"
    with MirrorServer(tmp_path / "srv") as server:
        source = HttpSource(http, server.url + "big.zip")
        reader = ZipReader.open(source, directory_cache=cache)
        names = {"m00003.png", "m00300.png", "m00598.png"}
        got = {e.name: d for e, d in reader.read(list(reader.find(names).values()))}
        assert got == {n: contents[n] for n in names}
        assert server.bytes_sent < 0.1 * size  # tail + directory + three members
        assert all(rng is not None for _, rng, _ in server.log)  # every request was a Range request
        server.reset_counters()
        again = ZipReader.open(source, directory_cache=cache)  # the directory comes from the cache
        assert server.requests == 0
        assert {e.name: d for e, d in again.read(list(again.find(names).values()))} == got
    with MirrorServer(tmp_path / "srv", ranges=False) as plain:
        fresh = HttpClient(policy=RetryPolicy(attempts=2, backoff_s=0.01, timeout_s=2))
        with pytest.raises(RangeNotHonoured):
            ZipReader.open(HttpSource(fresh, plain.url + "big.zip"))
        assert fresh.bytes_received == 0  # the body was left unread
        whole = tmp_path / "whole.zip"
        with pytest.raises(RangeNotHonoured):  # with a place to keep it, the whole file sent is kept
            ZipReader.open(HttpSource(http, plain.url + "big.zip", whole_file=whole))
        assert whole.read_bytes() == path.read_bytes() and plain.requests == 2


def test_directory_larger_than_the_first_tail(tmp_path):
    # 3000 members: the central directory (~150 KiB) is longer than the first 64 KiB tail request.
    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(3000):
            zf.writestr(f"member-with-a-longish-name-{i:06d}.png", os.urandom(8))
    reader = ZipReader.open(FileSource(path))
    entries = reader.find({"member-with-a-longish-name-000000.png", "member-with-a-longish-name-002999.png"})
    with zipfile.ZipFile(path) as zf:
        assert {e.name: d for e, d in reader.read(list(entries.values()))} == {n: zf.read(n) for n in entries}


def test_end_record_behind_a_long_comment(tmp_path):
    path = tmp_path / "commented.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("a.png", b"payload")
        zf.comment = b"PK\x05\x06 looks like an end record " + b"x" * 30000
    reader = ZipReader.open(FileSource(path))
    assert [d for _, d in reader.read(list(reader.find({"a.png"}).values()))] == [b"payload"]
