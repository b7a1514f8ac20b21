"""Reading a few masks out of a remote zip: bytes fetched and requests sent by the hand-written reader
(``maskrcnn.data.openimages.remote_zip``) against Python's ``zipfile`` over a file object that reads with HTTP Range
requests (unbuffered, and with 64 KiB read-ahead), for the same members, from a loopback server that waits
``--latency-ms`` before each answer (a round trip to a nearby server). All readers read one request at a time.

    python benchmarks/remote_zip.py [--members 20000] [--wanted 50] [--seed 0] [--latency-ms 20]

The zip is shaped like an Open Images mask shard: members named ``<ImageID>_<MID>_<BoxID>.png`` of 0.5-6 KiB,
stored as written (PNG does not compress further). The wanted members are chosen at random, as the images of a
class subset are; a fifth of them come in runs of neighbours, as several masks of one image do. Every reader's output
is checked against ``zipfile`` reading the local file.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # loopback: the test servers' Range parsing

from loopback import byte_range  # noqa: E402
from maskrcnn.data.openimages.remote_zip import HttpSource, ZipReader  # noqa: E402
from maskrcnn.http import HttpClient  # noqa: E402


def make_zip(path: Path, members: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    names = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for i in range(members):
            name = f"{rng.getrandbits(64):016x}_m0{rng.getrandbits(20):05x}_{rng.getrandbits(32):08x}.png"
            zf.writestr(name, rng.randbytes(rng.randint(512, 6 << 10)))
            names.append(name)
    return names


def choose(names: list[str], wanted: int, seed: int) -> list[str]:
    rng = random.Random(seed + 1)
    chosen: list[str] = []
    while len(chosen) < wanted:
        start = rng.randrange(len(names))
        run = 3 if rng.random() < 0.2 else 1  # a fifth come as neighbours: several masks of one image
        chosen.extend(n for n in names[start : start + run] if n not in chosen)
    return chosen[:wanted]


class RangedFile(io.RawIOBase):
    """A read-only, seekable view of a remote file: every ``readinto`` is one Range request."""

    def __init__(self, http: HttpClient, url: str):
        self.http, self.url, self.pos = http, url, 0
        _, self.size = http.get_tail(url, 1)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.size + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer) -> int:
        stop = min(self.size, self.pos + len(buffer))
        if stop <= self.pos:
            return 0
        data = self.http.get(self.url, byte_range=(self.pos, stop))
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def read_with_zipfile(http: HttpClient, url: str, wanted: list[str], read_ahead: int) -> dict[str, bytes]:
    raw = RangedFile(http, url)
    fp = io.BufferedReader(raw, buffer_size=read_ahead) if read_ahead else raw
    with zipfile.ZipFile(fp) as zf:
        return {name: zf.read(name) for name in wanted}


def read_with_ours(http: HttpClient, url: str, wanted: list[str]) -> dict[str, bytes]:
    reader = ZipReader.open(HttpSource(http, url))
    entries = reader.find(set(wanted))
    return {entry.name: data for entry, data in reader.read(list(entries.values()))}


class Counted:
    """A writable stream that counts what goes through it."""

    def __init__(self, stream, counts: dict[str, int]):
        self.stream, self.counts = stream, counts

    def write(self, data: bytes) -> int:
        self.counts["sent"] += len(data)
        return self.stream.write(data)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def serve(data: bytes, latency_s: float, counts: dict[str, int]) -> ThreadingHTTPServer:
    """A loopback server of one file with Range support (HTTP/1.1, kept-alive connections); ``counts["sent"]`` adds
    up the bytes it sends, status lines and headers included."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

        def setup(self) -> None:
            super().setup()
            self.wfile = Counted(self.wfile, counts)

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            time.sleep(latency_s)
            start, stop = byte_range(self.headers["Range"], len(data))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
            self.send_header("Content-Length", str(stop - start))
            self.end_headers()
            self.wfile.write(data[start:stop])

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=20000)
    parser.add_argument("--wanted", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard.zip"
        names = make_zip(path, args.members, args.seed)
        wanted = choose(names, args.wanted, args.seed)
        with zipfile.ZipFile(path) as zf:
            expected = {name: zf.read(name) for name in wanted}
            directory = zf.start_dir  # where the central directory starts
        size = path.stat().st_size
        counts = {"sent": 0}
        httpd = serve(path.read_bytes(), args.latency_ms / 1000, counts)
        url = f"http://127.0.0.1:{httpd.server_address[1]}/shard.zip"
        print(f"zip: {args.members} members, {size / 2**20:.1f} MiB, central directory {(size - directory) / 2**10:.0f} "
              f"KiB; reading {len(wanted)} members ({sum(map(len, expected.values())) / 2**10:.0f} KiB); "
              f"{args.latency_ms:g} ms a request")
        print(f"{'reader':34s} {'body KiB':>9s} {'KiB on the wire':>16s} {'requests':>9s} {'seconds':>8s}")
        readers = [
            ("hand-written ZipReader", lambda http: read_with_ours(http, url, wanted)),
            ("zipfile, unbuffered Range reads", lambda http: read_with_zipfile(http, url, wanted, 0)),
            ("zipfile, 64 KiB read-ahead", lambda http: read_with_zipfile(http, url, wanted, 64 << 10)),
        ]
        for label, read in readers:
            http = HttpClient()
            counts["sent"] = 0
            start = time.perf_counter()
            assert read(http) == expected, label
            seconds = time.perf_counter() - start
            print(f"{label:34s} {http.bytes_received / 2**10:9.0f} {counts['sent'] / 2**10:16.0f} {http.requests:9d} "
                  f"{seconds:8.2f}")
        httpd.shutdown()


if __name__ == "__main__":
    main()
