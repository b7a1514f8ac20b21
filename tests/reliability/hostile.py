"""A loopback HTTP server whose every answer misbehaves as its path says, for the download client's tests.

    with HostileServer() as server:
        http.get(server.url + "endless")     # 200 without a length, zeros until the client hangs up

Paths (any suffix, such as ``endless/a.jpg``, behaves as its first part):
- ``endless``           200, no Content-Length, zeros until the client hangs up (at most 1 GiB)
- ``announced``         200, Content-Length 1 GiB, zeros until the client hangs up
- ``range-oversized``   206 with the asked Content-Range, but Content-Length 512 MiB and zeros to match
- ``range-endless``     206 with the asked Content-Range, no Content-Length, zeros until the client hangs up
- ``range-wrong``       206 with a Content-Range 1000 bytes past the one asked
- ``trickle``           200, Content-Length 1000, one byte every ``trickle_s``
- ``trickle-headers``   the status line and headers themselves, one byte every ``trickle_s``
- ``drop``              200, Content-Length 100000, 50000 bytes, then the connection closed
``bytes_sent`` counts the body bytes that left the server, ``requests`` the requests.
"""

from __future__ import annotations

import re
import threading
import time
from http.server import BaseHTTPRequestHandler

from loopback import LoopbackServer

GIB = 1 << 30
_BLOCK = bytes(64 << 10)
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class HostileServer(LoopbackServer):
    def __init__(self, *, trickle_s: float = 0.25):
        super().__init__(_handler(self))
        self.trickle_s = trickle_s
        self.bytes_sent = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def stopping(self) -> None:
        self._stop.set()  # wakes the handlers still trickling

    def _sent(self, n: int) -> None:
        with self._lock:
            self.bytes_sent += n


def _handler(server: HostileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            with server._lock:
                server.requests += 1
            kind = self.path.strip("/").split("/")[0]
            try:
                getattr(self, "_" + kind.replace("-", "_"))()
            except OSError:
                pass  # the client hung up: what these answers wait for
            self.close_connection = True

        def _asked(self) -> tuple[int, int]:
            match = _RANGE.fullmatch(self.headers.get("Range", "bytes=0-"))
            start = int(match.group(1) or 0)
            return start, int(match.group(2)) if match.group(2) else start + 1023

        def _head(self, status: int, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()

        def _zeros(self, total: int) -> None:
            while total > 0 and not server._stop.is_set():
                block = _BLOCK[: min(len(_BLOCK), total)]
                self.wfile.write(block)
                server._sent(len(block))
                total -= len(block)

        def _endless(self) -> None:
            self._head(200, {"Connection": "close"})
            self._zeros(GIB)

        def _announced(self) -> None:
            self._head(200, {"Content-Length": str(GIB)})
            self._zeros(GIB)

        def _range_oversized(self) -> None:
            start, end = self._asked()
            self._head(206, {"Content-Range": f"bytes {start}-{end}/{GIB}", "Content-Length": str(512 << 20)})
            self._zeros(512 << 20)

        def _range_endless(self) -> None:
            start, end = self._asked()
            self._head(206, {"Content-Range": f"bytes {start}-{end}/{GIB}", "Connection": "close"})
            self._zeros(GIB)

        def _range_wrong(self) -> None:
            start, end = self._asked()
            size = end - start + 1
            self._head(206, {"Content-Range": f"bytes {start + 1000}-{end + 1000}/{GIB}", "Content-Length": str(size)})
            self._zeros(size)

        def _trickle(self) -> None:
            self._head(200, {"Content-Length": "1000"})
            for _ in range(1000):
                if server._stop.wait(server.trickle_s):
                    return
                self.wfile.write(b"x")
                self.wfile.flush()
                server._sent(1)

        def _trickle_headers(self) -> None:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Filler: " + b"y" * 1000:
                if server._stop.wait(server.trickle_s):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()

        def _drop(self) -> None:
            self._head(200, {"Content-Length": "100000"})
            self._zeros(50000)

    return Handler


def elapsed(function, *args, **kwargs) -> tuple[object, float]:
    """(what ``function`` returned or raised, seconds it took)."""
    start = time.monotonic()
    try:
        result = function(*args, **kwargs)
    except Exception as e:  # noqa: BLE001 - the tests look at the exception
        result = e
    return result, time.monotonic() - start
