"""HTTP GETs for everything the toolkit downloads (Open Images files, model weights), on urllib3's connection pool.

    http = HttpClient(policy=RetryPolicy(attempts=5, backoff_s=1.0, timeout_s=30.0, deadline_s=60.0))
    size = http.download(url, Path("weights.pth"), progress=True)      # streamed to disk, atomically
    head = http.get(url, byte_range=(0, 30))                          # the first 30 bytes, in memory
    tail, size = http.get_tail(url, 65536)                            # the last 64 KiB and the file size

``download(url, path, *, progress, desc, max_bytes, validate, keep_partial)`` streams the body to a temporary file
beside ``path`` and renames it into place only once it is complete (and ``validate(temp_path)`` accepted it), so
``path`` exists only whole. A try that breaks off resumes with ``Range: bytes=<have>-``; a server that answers that
with the whole file (status 200, no Range support) starts the file over. With ``keep_partial=True`` (large files such
as model weights) the temporary file is ``<path>.part`` and outlives a failed call or a killed process: the next
call continues from it (and starts over when the server cannot serve the rest: the file changed).

``get`` and ``get_tail`` return bodies in memory and are for small reads (Range reads of a zip, a tail). Every call
counts ``requests`` (tries) and ``bytes_received`` (body bytes). Offline, a host that does not answer is reported
within ``UNREACHABLE_TRIES`` tries as ``FetchError(unreachable=True)``: callers turn that into one clear line.

Connections are kept alive and reused (a ``urllib3.PoolManager``; ``HTTP(S)_PROXY`` / ``NO_PROXY`` are honoured), so
many Range reads of one host cost one TCP (and TLS) handshake per worker, not one per read.

What a server is trusted with (it may be a broken mirror, or hostile):
- Size. A body is read in chunks of at most 1 MiB into a buffer or file bounded by what is expected: a Range read by
  the range's length, a tail by its length, a download by ``max_bytes`` when given; and by the Content-Length the
  server announced. An announced length over the bound is refused before the body is read; a body that grows past
  it is cut off at once. Memory therefore stays within the bound (plus a chunk), whatever the server sends.
- Time. ``timeout_s`` bounds connecting and each read; ``deadline_s`` bounds a whole try: it must end within
  ``deadline_s`` plus the time its body takes at ``min_rate`` (64 KiB/s), counted on the bytes announced or already
  received. A server that trickles (one byte a second keeps every read alive) is cut off there: a watchdog shuts the
  socket down, which also ends a read blocked in the headers.

Failures and retries (urllib3's ``Retry`` counts the tries and computes the pauses):
- retried, ``attempts`` tries in all, pausing 0, then about ``2 * backoff_s``, ``4 * backoff_s``, ...: HTTP 5xx,
  408, 425, 429, a dropped or reset connection, a read timeout, the deadline, a body shorter or longer than
  announced, a Range answer for other bytes than asked, content that ``validate`` rejects;
- no answer at all (DNS failure, connection refused, connect timeout, TLS failure) is tried only
  ``UNREACHABLE_TRIES`` times, so that being offline is reported within seconds;
- at once: other HTTP errors (404, 403), and a body larger than ``max_bytes`` (it will not shrink).
What still fails raises ``FetchError`` naming the URL and the last reason. A server that answers a Range request with
the whole file raises ``RangeNotHonoured`` before its body is read (``get_tail`` may first save that file).
Ranges are half-open ``(start, stop)`` byte offsets, sent as ``Range: bytes=start-(stop-1)``.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import os
import re
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import urllib3
from tqdm import tqdm
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util.retry import Retry

from maskrcnn.io import atomic_open

CHUNK = 1 << 20
UNREACHABLE_TRIES = 2  # tries when the host does not answer at all, whatever RetryPolicy.attempts says
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})  # and any other 5xx
MAX_REDIRECTS = 5
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts``: tries in all (>= 1); ``backoff_s``: scale of the pauses between tries; ``timeout_s``: connecting,
    and each read; ``deadline_s`` and ``min_rate``: a try must end within ``deadline_s`` + (body bytes) / ``min_rate``
    seconds (see the module docstring)."""

    attempts: int = 5
    backoff_s: float = 1.0
    timeout_s: float = 30.0
    deadline_s: float = 60.0
    min_rate: float = 64 * 1024  # bytes/s


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


class _Failure(Exception):
    """One try failed. ``retry``: whether another try may help; ``cause``: what urllib3's Retry counts it as (a
    urllib3 error, or the error response)."""

    def __init__(self, reason: str, *, retry: bool = True, unreachable: bool = False, status: int | None = None,
                 cause: Exception | None = None, response: urllib3.BaseHTTPResponse | None = None):  # fmt: skip
        super().__init__(reason)
        self.reason, self.retry, self.unreachable, self.status = reason, retry, unreachable, status
        self.cause = cause if cause is not None or response is not None else _Other(reason)
        self.response = response


class _Other(Exception):
    """A failure urllib3 does not know of (a bad body): counted as "other" by Retry."""


def host_of(url: str) -> str:
    """``https://a.b:8080/x`` -> ``a.b:8080``, for messages."""
    return urllib.parse.urlsplit(url).netloc or url


class HttpClient:
    """GETs under one retry policy over kept-alive connections; counts the body bytes received and the tries
    (thread-safe: share one client between worker threads)."""

    def __init__(
        self, *, policy: RetryPolicy = RetryPolicy(), user_agent: str = "maskrcnn", connections: int = 16
    ):
        """connections: connections kept alive per host (one per worker thread that uses the client)."""
        if policy.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be >= 1")
        self.policy = policy
        self.user_agent = user_agent
        self.bytes_received = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._timeout = urllib3.Timeout(connect=policy.timeout_s, read=policy.timeout_s)
        self._connections = connections
        self._direct = self._watched(urllib3.PoolManager(maxsize=connections))
        self._proxies = urllib.request.getproxies()
        self._via_proxy: dict[str, urllib3.ProxyManager] = {}

    # -- the three calls ---------------------------------------------------------------------------------------

    def get(
        self,
        url: str,
        *,
        byte_range: tuple[int, int] | None = None,
        validate: Callable[[bytes], None] | None = None,
        max_bytes: int | None = None,
    ) -> bytes:
        """The body of ``url`` (or of ``byte_range`` of it), at most ``max_bytes``. ``validate(body)`` may raise
        ValueError to retry."""
        wanted = None if byte_range is None else byte_range[1] - byte_range[0]
        bounds = [b for b in (wanted, max_bytes) if b is not None]

        def attempt(deadline: _Deadline) -> bytes:
            with self._request(url, deadline, byte_range=byte_range) as response:
                if byte_range is not None:
                    _check_range(response, byte_range[0], url)
                parts: list[bytes] = []
                self._copy(response, parts.append, deadline, limit=min(bounds) if bounds else None,
                           hard_limit=max_bytes is not None and (wanted is None or max_bytes < wanted))  # fmt: skip
            body = b"".join(parts)
            _check(validate, body)
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

        def attempt(deadline: _Deadline) -> tuple[bytes, int]:
            with self._request(url, deadline, suffix=length) as response:
                match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
                if response.status != 206 or match is None:
                    if whole_file is not None and response.status == 200:
                        with atomic_open(whole_file, "wb") as f:
                            self._stream_to_file(response, f, deadline, desc=whole_file.name, progress=progress)
                    raise RangeNotHonoured(url)
                start, total = int(match.group(1)), match.group(3)
                parts: list[bytes] = []
                self._copy(response, parts.append, deadline, limit=length)
            body = b"".join(parts)
            if total == "*":
                raise RangeNotHonoured(url)
            if start + len(body) != int(total):
                raise _Failure(f"tail of {len(body)} bytes from {start} does not end at the file size {total}")
            return body, int(total)

        return self._with_retries(url, attempt)

    def download(
        self,
        url: str,
        path: Path,
        *,
        progress: bool = False,
        desc: str | None = None,
        max_bytes: int | None = None,
        validate: Callable[[Path], None] | None = None,
        keep_partial: bool = False,
    ) -> int:
        """Stream ``url`` into ``path`` atomically (nothing appears at ``path`` unless complete); a retry after a
        broken transfer asks for the rest with a Range request. ``max_bytes``: refuse a larger file (without reading
        it when its size is announced). ``validate(file)`` may raise ValueError: the file is fetched again.
        ``keep_partial``: download into ``<path>.part`` and leave it there when the download fails or the process is
        killed, so that the next call continues from it (for large files; ``validate`` should then check a hash,
        in case the file changed on the server in between). Returns the file size."""
        def into(f) -> int:
            try_once = functools.partial(self._download_try, url, f, desc or path.name, progress, max_bytes, validate)
            return self._with_retries(url, try_once)

        if not keep_partial:
            with atomic_open(path, "wb") as f:
                return into(f)
        part = path.with_name(path.name + ".part")
        with open(part, "ab") as f:  # appends to what an earlier call left
            size = into(f)
            os.fsync(f.fileno())
        os.replace(part, path)
        return size

    def _download_try(
        self, url: str, f, desc: str, progress: bool, max_bytes: int | None,
        validate: Callable[[Path], None] | None, deadline: _Deadline,
    ) -> int:  # fmt: skip
        """One try of ``download`` into the open file ``f``, continuing from the bytes it holds."""
        have = f.seek(0, os.SEEK_END)
        try:
            with self._request(url, deadline, byte_range=(have, None) if have else None) as response:
                resumed = have and response.status == 206 and _range_start(response) == have
                if not resumed:
                    _restart(f)
                    if response.status == 206:
                        raise _Failure(f"unexpected Content-Range {response.headers.get('Content-Range')!r}")
                self._stream_to_file(response, f, deadline, desc=desc, progress=progress, max_bytes=max_bytes)
        except _Failure as failure:
            if failure.status != 416 or not have:
                raise
            _restart(f)  # nothing at or past the bytes we hold: the file is not the one they came from
            raise _Failure(f"{failure.reason} for the bytes after {have}: starting over") from None
        f.flush()
        if validate is not None:
            try:
                validate(Path(f.name))
            except ValueError as e:
                _restart(f)
                raise _Failure(f"invalid content ({e})") from None
        return f.tell()

    # -- one try ---------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _request(
        self, url: str, deadline: _Deadline, *, byte_range: tuple[int, int | None] | None = None,
        suffix: int | None = None,
    ) -> Iterator[urllib3.BaseHTTPResponse]:  # fmt: skip
        """Send one GET -> its response with the body unread; error statuses become ``_Failure``. The connection goes
        back to the pool only when the body was read whole."""
        headers = {"User-Agent": self.user_agent}
        if suffix is not None:
            headers["Range"] = f"bytes=-{suffix}"
        elif byte_range is not None:
            start, stop = byte_range
            headers["Range"] = f"bytes={start}-" if stop is None else f"bytes={start}-{stop - 1}"
        with self._lock:
            self.requests += 1
        _watching.deadline = deadline  # for the connection that sends this request (_Watched.request)
        try:
            response = self._manager(url).urlopen(
                "GET", url, headers=headers, preload_content=False, decode_content=False, timeout=self._timeout,
                retries=Retry(total=None, connect=0, read=0, status=0, other=0, redirect=MAX_REDIRECTS),
            )  # fmt: skip
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as e:
            raise _failure(e, url, deadline) from None
        finally:
            _watching.deadline = None
        whole = False
        try:
            if response.status >= 400:
                reason = f"HTTP {response.status} {response.reason or ''}".strip()
                retry = response.status in RETRY_STATUSES or response.status >= 500
                raise _Failure(reason, retry=retry, status=response.status, response=response)
            yield response
            whole = response.length_remaining in (0, None) and response.isclosed()
        except (urllib3.exceptions.HTTPError, OSError, http.client.HTTPException) as e:
            raise _failure(e, url, deadline) from None
        finally:
            if not whole:
                response.close()  # an unread or broken body: this connection is not reused
            response.release_conn()

    def _copy(
        self, response: urllib3.BaseHTTPResponse, write: Callable[[bytes], object], deadline: _Deadline, *,
        limit: int | None, hard_limit: bool = False, received: int = 0,
    ) -> int:  # fmt: skip
        """Read the body into ``write`` in chunks, never past ``limit`` bytes (with what was ``received`` before, for a
        resumed download) -> bytes read now. Past the limit: a ``_Failure``, retried unless ``hard_limit`` (a size the
        caller refuses, rather than a server that sends more than it should)."""
        announced = _content_length(response)
        if limit is not None and announced is not None and received + announced > limit:
            raise _Failure(_too_long(received + announced, limit, hard_limit, "announced"), retry=not hard_limit)
        deadline.allow_for(announced or 0)
        count = 0
        while True:
            want = CHUNK if limit is None else min(CHUNK, limit - received - count + 1)  # one byte more shows excess
            chunk = response.read(want, decode_content=False)
            if not chunk:
                break
            count += len(chunk)
            with self._lock:
                self.bytes_received += len(chunk)
            if limit is not None and received + count > limit:
                raise _Failure(_too_long(received + count, limit, hard_limit, "sent"), retry=not hard_limit)
            write(chunk)
            if announced is None:  # a body of unknown length may go on as long as it keeps up min_rate
                deadline.allow_for(count)
        if announced is not None and count != announced:
            raise _Failure(f"connection closed after {count} of {announced} bytes")
        return count

    def _stream_to_file(
        self, response: urllib3.BaseHTTPResponse, f, deadline: _Deadline, *, desc: str, progress: bool,
        max_bytes: int | None = None,
    ) -> None:  # fmt: skip
        """Append the body to the open file ``f`` (which holds ``f.tell()`` bytes already), with a progress bar."""
        have = f.tell()
        announced = _content_length(response)
        total = None if announced is None else have + announced
        with tqdm(desc=desc, total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                  disable=not progress, leave=False) as bar:  # fmt: skip

            def write(chunk: bytes) -> None:
                f.write(chunk)
                bar.update(len(chunk))

            self._copy(response, write, deadline, limit=max_bytes, hard_limit=True, received=have)

    def _with_retries(self, url: str, attempt: Callable[[_Deadline], object]):
        policy = self.policy
        retry = Retry(total=policy.attempts - 1, connect=UNREACHABLE_TRIES - 1, read=None, status=None, other=None,
                      backoff_factor=policy.backoff_s, backoff_jitter=policy.backoff_s / 2,
                      respect_retry_after_header=False)  # fmt: skip
        tries = 0
        while True:
            tries += 1
            deadline = _Deadline(policy.deadline_s, policy.min_rate)
            try:
                return attempt(deadline)
            except _Failure as failure:
                if failure.retry:
                    try:
                        retry = retry.increment("GET", url, response=failure.response, error=failure.cause)
                    except MaxRetryError:
                        pass
                    else:
                        retry.sleep()
                        continue
                after = f"after {tries} tries" if tries > 1 else "(1 try)"
                raise FetchError(url, f"{failure.reason} {after}", unreachable=failure.unreachable,
                                 status=failure.status) from None  # fmt: skip
            finally:
                deadline.close()

    def _manager(self, url: str) -> urllib3.PoolManager:
        parts = urllib.parse.urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        if not proxy or urllib.request.proxy_bypass(parts.hostname or ""):
            return self._direct
        with self._lock:
            if proxy not in self._via_proxy:
                self._via_proxy[proxy] = self._watched(urllib3.ProxyManager(proxy, maxsize=self._connections))
            return self._via_proxy[proxy]

    @staticmethod
    def _watched(manager: urllib3.PoolManager) -> urllib3.PoolManager:
        manager.pool_classes_by_scheme = {"http": _WatchedPool, "https": _WatchedHTTPSPool}
        return manager


# -- the deadline ----------------------------------------------------------------------------------------------------

_watching = threading.local()  # .deadline: the _Deadline of the request this thread is sending


class _Deadline:
    """Ends one try at ``start + seconds + allowed_bytes / min_rate`` by shutting its connection's socket down, which
    wakes a read blocked in another thread (the try's). ``allow_for`` raises the byte count as a body arrives."""

    def __init__(self, seconds: float, min_rate: float):
        self.seconds, self.min_rate = seconds, min_rate
        self.start = time.monotonic()
        self.end = self.start + seconds
        self.expired = False
        self.allowed = seconds  # seconds the try had when it expired
        self._connection: HTTPConnection | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._arm()

    def watch(self, connection: HTTPConnection) -> None:
        self._connection = connection

    def allow_for(self, nbytes: int) -> None:
        self.end = max(self.end, self.start + self.seconds + nbytes / self.min_rate)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()

    def _arm(self) -> None:
        self._timer = threading.Timer(max(0.0, self.end - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._closed:
                return
            if time.monotonic() < self.end:  # moved on by allow_for: wait for the new end
                self._arm()
                return
            self.expired = True
            self.allowed = self.end - self.start
            sock = getattr(self._connection, "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """A connection that puts itself under the deadline of the request it sends."""

    def request(self, *args, **kwargs) -> None:
        deadline = getattr(_watching, "deadline", None)
        if deadline is not None:
            deadline.watch(self)
        super().request(*args, **kwargs)


class _WatchedConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


# -- helpers ---------------------------------------------------------------------------------------------------------


def _restart(f) -> None:
    """Empty the download file ``f``."""
    f.seek(0)
    f.truncate()


def _check(validate: Callable[[bytes], None] | None, body: bytes) -> None:
    if validate is not None:
        try:
            validate(body)
        except ValueError as e:
            raise _Failure(f"invalid content ({e})") from None


def _check_range(response: urllib3.BaseHTTPResponse, start: int, url: str) -> None:
    if response.status != 206:
        raise RangeNotHonoured(url)
    if _range_start(response) != start:
        raise _Failure(f"server sent Content-Range {response.headers.get('Content-Range')!r} for a range at {start}")


def _too_long(size: int, limit: int, hard: bool, how: str) -> str:
    if how == "announced":
        return (f"the body is {size} bytes, more than the {limit} allowed" if hard
                else f"server announced {size} bytes where {limit} were expected")  # fmt: skip
    return f"the body is more than the {limit} bytes allowed" if hard else f"server sent more than the {limit} bytes expected"


def _range_start(response: urllib3.BaseHTTPResponse) -> int | None:
    match = _CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
    return int(match.group(1)) if match else None


def _content_length(response: urllib3.BaseHTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.strip().isdigit() else None


def _failure(error: BaseException, url: str, deadline: _Deadline) -> _Failure:
    """A network error of one try -> the ``_Failure`` that says what happened, naming the host."""
    host = host_of(url)
    cause = error.reason if isinstance(error, MaxRetryError) and error.reason is not None else error
    if deadline.expired:
        return _Failure(f"{host} sent no complete answer within the {deadline.allowed:.0f} s deadline",
                        cause=_Other("deadline"))  # fmt: skip
    if isinstance(cause, NameResolutionError):
        return _Failure(f"cannot resolve host {host} (offline?)", unreachable=True, cause=cause)
    if isinstance(cause, NewConnectionError):
        refused = isinstance(cause.__cause__, ConnectionRefusedError)
        reason = f"connection to {host} refused" if refused else f"cannot connect to {host} ({cause.__cause__})"
        return _Failure(reason, unreachable=True, cause=cause)
    if isinstance(cause, ConnectTimeoutError):
        return _Failure(f"{host} timed out", unreachable=True, cause=cause)
    if isinstance(cause, SSLError):  # counted as no answer, like a refused connection
        return _Failure(f"TLS with {host} failed ({cause})", unreachable=True, cause=ConnectTimeoutError(str(cause)))
    if isinstance(cause, ReadTimeoutError):
        return _Failure(f"{host} timed out", cause=cause)
    inner = cause.args[1] if isinstance(cause, ProtocolError) and len(cause.args) > 1 else cause
    if isinstance(inner, http.client.IncompleteRead):  # urllib3's counts bytes, http.client's keeps them
        read = inner.partial if isinstance(inner.partial, int) else len(inner.partial)
        more = f", {inner.expected} more expected" if inner.expected is not None else ""
        return _Failure(f"connection to {host} closed early ({read} bytes read{more})", cause=ProtocolError(str(inner)))
    if isinstance(inner, (ConnectionError, http.client.HTTPException, ProtocolError)):
        name = type(inner).__name__
        return _Failure(f"connection to {host} broken ({name})", cause=ProtocolError(name))
    if isinstance(cause, urllib3.exceptions.LocationParseError):
        return _Failure(f"bad URL {url!r}", retry=False)
    return _Failure(f"{host}: {cause}", cause=ProtocolError(str(cause)))
