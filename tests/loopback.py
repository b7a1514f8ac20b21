"""The part every test HTTP server shares: a threaded server on 127.0.0.1 at a free port, run from a daemon thread
for the length of a ``with`` block, and the parsing of a ``Range: bytes=...`` header.

    class MyServer(LoopbackServer):
        def __init__(self):
            super().__init__(MyHandler)       # a BaseHTTPRequestHandler class
    with MyServer() as server:
        fetch(server.url + "file")           # http://127.0.0.1:<port>/file

Subclasses that must wake handlers still running when the block ends (a hang, a trickle) override ``stopping``.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class LoopbackServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/"

    def stopping(self) -> None:
        """Called as the ``with`` block ends, before the server shuts down."""

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopping()
        self._httpd.shutdown()
        self._httpd.server_close()


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """A Range header on a file of ``size`` bytes -> half-open (start, stop), the end clipped to the file:
    ``bytes=a-b`` -> (a, b + 1), ``bytes=a-`` -> (a, size), ``bytes=-n`` -> (size - n, size); None if malformed."""
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        return max(0, size - int(last)), size
    return int(first), size if last == "" else min(size, int(last) + 1)
