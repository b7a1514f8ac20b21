"""A weights host on 127.0.0.1 for the download tests: files from memory, redirects, Range, and dropped connections.

    with WeightsServer({"models/w.pth": data}, redirects={"old/w.pth": "/models/w.pth"}) as server:
        server.drop_next(2, after=100_000)        # the next 2 answers longer than 100 kB stop there and hang up
        ...                                      # download server.url + "old/w.pth"
        server.ranges_asked                      # the Range headers of the file requests, in order

``ranges=False`` makes it answer every request with the whole file, as a server without Range support does.
"""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler

from loopback import LoopbackServer, byte_range


class WeightsServer(LoopbackServer):
    def __init__(self, files: dict[str, bytes], *, redirects: dict[str, str] | None = None, ranges: bool = True):
        super().__init__(_handler(self))
        self.files = files
        self.redirects = redirects or {}
        self.ranges = ranges
        self.ranges_asked: list[str | None] = []
        self.bytes_sent = 0
        self._drops: list[tuple[int, bool]] = []  # (length, cut there?) for the next answers longer than length
        self._lock = threading.Lock()

    def drop_next(self, times: int, *, after: int, skip: int = 0) -> None:
        """Of the answers with more than ``after`` bytes, let ``skip`` through, then cut ``times`` after ``after``."""
        with self._lock:
            self._drops.extend([(after, False)] * skip + [(after, True)] * times)

    def _cut_for(self, length: int) -> int | None:
        with self._lock:
            if not self._drops or length <= self._drops[0][0]:
                return None
            after, cut = self._drops.pop(0)
            return after if cut else None


def _handler(server: WeightsServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            if path in server.redirects:
                self.send_response(302)
                self.send_header("Location", server.redirects[path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = server.files.get(path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            asked = self.headers.get("Range")
            with server._lock:
                server.ranges_asked.append(asked)
            status, start, stop = 200, 0, len(data)
            if asked and server.ranges:
                status, (start, stop) = 206, byte_range(asked, len(data))
            body = data[start:stop]
            cut = server._cut_for(len(body))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{len(data)}")
            self.end_headers()
            sent = body if cut is None else body[:cut]
            with server._lock:
                server.bytes_sent += len(sent)
            try:
                self.wfile.write(sent)
                self.wfile.flush()
                if cut is not None:  # announced the whole body, sent part of it: the connection drops
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
            except OSError:
                pass

    return Handler

