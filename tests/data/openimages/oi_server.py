"""A local HTTP file server on 127.0.0.1 for the Open Images tests: Range requests, byte counts, injected faults.

    with MirrorServer(root) as server:
        server.inject("masks-3.zip", "drop", times=2)   # the next 2 requests for it send half a body and hang up
        ...                                              # fetch from server.url + "ann/v5/..."
        server.bytes_sent, server.requests               # what it served

Faults: ``"500"`` (an HTTP 500), ``"drop"`` (headers announcing the full length, half the body, then the
connection closed), ``"stall"`` (sleep ``stall_s`` before answering: a client timeout), ``"hang"`` (answer only
when the server stops; sets ``hanging``). ``ranges=False`` makes it ignore Range headers like a plain server.
It speaks HTTP/1.1 and keeps connections open between requests; ``connections`` counts those accepted.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

from loopback import LoopbackServer, byte_range


@dataclass
class Fault:
    pattern: str
    kind: str
    times: int
    skip: int = 0


class MirrorServer(LoopbackServer):
    def __init__(self, root: Path, *, ranges: bool = True, stall_s: float = 1.0):
        super().__init__(_make_handler(self))
        self.root = root.resolve()
        self.ranges = ranges
        self.stall_s = stall_s
        self.bytes_sent = 0
        self.connections = 0
        self.bytes_by_path: Counter[str] = Counter()
        self.log: list[list] = []  # [path, Range header, status] in order of arrival
        self.faults: list[Fault] = []
        self.hanging = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    @property
    def requests(self) -> int:
        return len(self.log)

    def inject(self, pattern: str, kind: str, *, times: int = 1, skip: int = 0) -> None:
        """The next ``times`` requests whose path contains ``pattern`` (after ``skip`` of them) get ``kind``."""
        assert kind in ("500", "drop", "stall", "hang")
        with self._lock:
            self.faults.append(Fault(pattern, kind, times, skip))

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_sent = 0
            self.connections = 0
            self.bytes_by_path.clear()
            self.log.clear()

    def stopping(self) -> None:
        self._stopping.set()  # answers the hanging requests

    # -- used by the handler ----------------------------------------------------------------------------------

    def _fault_for(self, path: str) -> str | None:
        with self._lock:
            for fault in self.faults:
                if fault.pattern in path and fault.times > 0:
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.times -= 1
                    return fault.kind
        return None

    def _arrived(self, path: str, range_header: str | None) -> list:
        """Log a request as it arrives (its status is filled in before the answer goes out)."""
        entry = [path, range_header, None]
        with self._lock:
            self.log.append(entry)
        return entry

    def _count(self, path: str, n: int) -> None:
        with self._lock:
            self.bytes_sent += n
            self.bytes_by_path[path] += n


def _make_handler(server: MirrorServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection serves many requests
        disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server.connections += 1

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            path = unquote(urlsplit(self.path).path)
            range_header = self.headers.get("Range")
            self._entry = server._arrived(path, range_header)
            fault = server._fault_for(path)
            if fault == "stall":
                time.sleep(server.stall_s)
            elif fault == "hang":
                server.hanging.set()
                server._stopping.wait()
                return
            if fault == "500":
                return self._send(path, range_header, 500, b"injected failure\n", {})
            file = (server.root / path.lstrip("/")).resolve()
            if server.root not in file.parents or not file.is_file():
                return self._send(path, range_header, 404, b"not found\n", {})
            data = file.read_bytes()
            size = len(data)
            if range_header and server.ranges:
                asked = byte_range(range_header, size)
                if asked is None:
                    return self._send(path, range_header, 400, b"bad range\n", {})
                start, stop = asked
                if start >= size or start >= stop:
                    return self._send(path, range_header, 416, b"", {"Content-Range": f"bytes */{size}"})
                body = data[start:stop]
                headers = {"Content-Range": f"bytes {start}-{stop - 1}/{size}"}
                return self._send(path, range_header, 206, body, headers, drop=fault == "drop")
            return self._send(path, range_header, 200, data, {}, drop=fault == "drop")

        def _send(self, path, range_header, status, body, headers, drop=False) -> None:
            self._entry[2] = status
            sent = body[: len(body) // 2] if drop else body
            server._count(path, len(sent))  # before writing: a client may act on the bytes at once
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if server.ranges:
                    self.send_header("Accept-Ranges", "bytes")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(sent)
                self.wfile.flush()
                if drop:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
            except OSError:
                pass  # the client hung up

    return Handler
