"""HTTP GETs with retries, Range requests and byte counts, on the standard library only.

Transient failures (HTTP 5xx, 408, 429, connection reset, a dropped connection, a read timeout, a body shorter
than announced, a body that fails its check) are retried ``attempts`` times in all, sleeping about
``backoff_s * 2**k`` between tries; no answer at all (DNS failure, connection refused, connect timeout) is tried
only ``UNREACHABLE_TRIES`` times, so that being offline is reported within seconds; other HTTP errors (404, 403)
fail at once. What still fails raises
``FetchError`` naming the URL and the last reason.

Ranges are half-open ``(start, stop)`` byte offsets, sent as ``Range: bytes=start-(stop-1)``. A server that answers
a Range request with the whole file (status 200) raises ``RangeNotHonoured``, before the body is read.

>>> http = HttpClient(policy=RetryPolicy(attempts=3, backoff_s=0.5, timeout_s=30))
>>> tail, size = http.get_tail("https://example.org/a.zip", 65536)   # last 64 KiB and the file size
>>> http.get("https://example.org/a.zip", byte_range=(0, 30))       # the first 30 bytes
"""

from __future__ import annotations

import http.client
import random
import re
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from maskrcnn.io import atomic_open

CHUNK = 1 << 20
UNREACHABLE_TRIES = 2  # tries when the host does not answer at all, whatever RetryPolicy.attempts says
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts``: tries in all (>= 1); ``backoff_s``: first pause, doubled each retry; ``timeout_s``: socket
    timeout of one try (connect, and each read)."""

    attempts: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 30.0


class FetchError(Exception):
    """A GET that failed for good. ``unreachable``: no HTTP answer at all (DNS, refused, timed out)."""

    def __init__(self, url: str, reason: str, *, unreachable: bool = False, status: int | None = None):
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.unreachable = unreachable
        self.status = status


class RangeNotHonoured(Exception):
    """The server sent the whole file to a Range request."""


class _Retry(Exception):
    def __init__(self, reason: str, *, unreachable: bool = False, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable
        self.status = status


def host_of(url: str) -> str:
    """``https://a.b:8080/x`` -> ``a.b:8080``, for messages."""
    return urllib.parse.urlsplit(url).netloc or url


class HttpClient:
    """GETs under one retry policy; counts the body bytes received and the requests sent (thread-safe)."""

    def __init__(self, *, policy: RetryPolicy = RetryPolicy(), user_agent: str = "maskrcnn-openimages"):
        if policy.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be >= 1")
        self.policy = policy
        self.user_agent = user_agent
        self.bytes_received = 0
        self.requests = 0
        self._lock = threading.Lock()

    def get(
        self,
        url: str,
        *,
        byte_range: tuple[int, int] | None = None,
        validate: Callable[[bytes], None] | None = None,
    ) -> bytes:
        """The body of ``url`` (or of ``byte_range`` of it). ``validate(body)`` may raise ValueError to retry."""

        def attempt() -> bytes:
            with self._open(url, byte_range=byte_range) as response:
                if byte_range is not None:
                    self._check_range(response, byte_range[0])
                body = self._read_all(response)
            if byte_range is not None and len(body) > byte_range[1] - byte_range[0]:
                raise _Retry(f"got {len(body)} bytes for a {byte_range[1] - byte_range[0]}-byte range")
            if validate is not None:
                try:
                    validate(body)
                except ValueError as e:
                    raise _Retry(f"invalid content ({e})") from None
            return body

        return self._with_retries(url, attempt)

    def get_tail(
        self, url: str, length: int, *, whole_file: Path | None = None, progress: bool = False
    ) -> tuple[bytes, int]:
        """The last ``length`` bytes of ``url`` (all of it when shorter) and the file's total size, in one request.

        A server that ignores Range starts sending the whole file: with ``whole_file`` given, it is saved there
        (atomically, so it need not be fetched again) before ``RangeNotHonoured`` is raised; without, the body is
        left unread.
        """

        def attempt() -> tuple[bytes, int]:
            with self._open(url, suffix=length) as response:
                match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
                if _status(response) != 206 or match is None:
                    if whole_file is not None and _status(response) == 200:
                        self._save(response, whole_file, progress=progress)
                    raise RangeNotHonoured(url)
                start, total = int(match.group(1)), match.group(3)
                body = self._read_all(response)
            if total == "*":
                raise RangeNotHonoured(url)
            if start + len(body) != int(total):
                raise _Retry(f"tail of {len(body)} bytes from {start} does not end at the file size {total}")
            return body, int(total)

        return self._with_retries(url, attempt)

    def download(self, url: str, path: Path, *, progress: bool = False, desc: str | None = None) -> int:
        """Stream ``url`` into ``path`` atomically (nothing appears at ``path`` unless complete); a retry after a
        broken transfer asks for the rest with a Range request. Returns the file size."""
        with atomic_open(path, "wb") as f, tqdm(
            desc=desc or path.name, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress, leave=False
        ) as bar:

            def attempt() -> int:
                have = f.tell()
                with self._open(url, byte_range=(have, None) if have else None) as response:
                    resumed = have and _status(response) == 206 and _range_start(response) == have
                    if not resumed:
                        f.seek(0)
                        f.truncate()
                        bar.reset()
                        if _status(response) == 206:
                            raise _Retry(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
                    length = _content_length(response, default=None)
                    total = None if length is None else f.tell() + length
                    bar.total = total
                    while chunk := self._read_chunk(response):
                        f.write(chunk)
                        bar.update(len(chunk))
                if total is not None and f.tell() != total:
                    raise _Retry(f"transfer ended at {f.tell()} of {total} bytes")
                return f.tell()

            return self._with_retries(url, attempt)

    def _save(self, response, path: Path, *, progress: bool) -> None:
        """Stream a whole-file response into ``path`` atomically; a short body raises ``_Retry``."""
        expected = _content_length(response, default=None)
        with atomic_open(path, "wb") as f, tqdm(
            desc=path.name, total=expected, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
            leave=False,
        ) as bar:  # fmt: skip
            while chunk := self._read_chunk(response):
                f.write(chunk)
                bar.update(len(chunk))
            if expected is not None and f.tell() != expected:
                raise _Retry(f"connection closed after {f.tell()} of {expected} bytes")

    # -- one try -------------------------------------------------------------------------------------------------

    def _open(self, url: str, *, byte_range: tuple[int, int | None] | None = None, suffix: int | None = None):
        headers = {"User-Agent": self.user_agent}
        if suffix is not None:
            headers["Range"] = f"bytes=-{suffix}"
        elif byte_range is not None:
            start, stop = byte_range
            headers["Range"] = f"bytes={start}-" if stop is None else f"bytes={start}-{stop - 1}"
        with self._lock:
            self.requests += 1
        try:
            return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=self.policy.timeout_s)
        except urllib.error.HTTPError as e:
            e.close()
            reason = f"HTTP {e.code} {e.reason}"
            if e.code in (408, 425, 429) or e.code >= 500:
                raise _Retry(reason, status=e.code) from None
            raise FetchError(url, reason, status=e.code) from None
        except urllib.error.URLError as e:
            raise _Retry(_describe(e.reason, url), unreachable=True) from None
        except (http.client.HTTPException, OSError) as e:
            raise _Retry(_describe(e, url)) from None

    def _check_range(self, response, start: int) -> None:
        if _status(response) != 206:
            raise RangeNotHonoured(response.geturl())
        if _range_start(response) != start:
            raise _Retry(f"server sent Content-Range {response.headers.get('Content-Range')!r} for a range at {start}")

    def _read_all(self, response) -> bytes:
        parts = []
        while chunk := self._read_chunk(response):
            parts.append(chunk)
        body = b"".join(parts)
        expected = _content_length(response, default=None)
        if expected is not None and len(body) != expected:
            raise _Retry(f"connection closed after {len(body)} of {expected} bytes")
        return body

    def _read_chunk(self, response) -> bytes:
        try:
            chunk = response.read(CHUNK)
        except (http.client.HTTPException, OSError) as e:
            raise _Retry(_describe(e, response.geturl())) from None
        with self._lock:
            self.bytes_received += len(chunk)
        return chunk

    def _with_retries(self, url: str, attempt: Callable):
        last: _Retry | None = None
        tries = 0
        for k in range(self.policy.attempts):
            if k:
                time.sleep(self.policy.backoff_s * (2 ** (k - 1)) * random.uniform(0.75, 1.25))
            try:
                tries += 1
                return attempt()
            except _Retry as e:
                last = e
                if e.unreachable and tries >= UNREACHABLE_TRIES:
                    break  # no answer at all (offline, DNS, nothing listening): say so soon
        assert last is not None
        tries = f"after {tries} tries" if tries > 1 else "(1 try)"
        raise FetchError(url, f"{last.reason} {tries}", unreachable=last.unreachable, status=last.status)


def _status(response) -> int:
    return getattr(response, "status", None) or 200


def _range_start(response) -> int | None:
    match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
    return int(match.group(1)) if match else None


def _content_length(response, *, default: int | None) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else default


def _describe(error: BaseException | str, url: str) -> str:
    """A short reason for a network error, naming the host where that helps."""
    host = host_of(url)
    if isinstance(error, socket.gaierror):
        return f"cannot resolve host {host} (offline?)"
    if isinstance(error, ConnectionRefusedError):
        return f"connection to {host} refused"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"{host} timed out"
    if isinstance(error, http.client.IncompleteRead):
        return f"connection to {host} closed early ({len(error.partial)} bytes read)"
    if isinstance(error, (ConnectionError, http.client.HTTPException)):
        return f"connection to {host} broken ({type(error).__name__}: {error})".replace(": )", ")")
    return f"{host}: {error}"
