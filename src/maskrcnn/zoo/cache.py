"""The weights cache: download a published file once, resume it when interrupted, and check it before first use.

Layout, under ``$MASKRCNN_HOME`` (default ``~/.cache/maskrcnn``)::

    weights/<published file name>                the file, checked (the name keeps the publisher's hash prefix)
    weights/<published file name>.part           a download in progress: the next try continues from its end
    weights/<published file name>.verified.json  {"sha256", "size", "mtime_ns"} of the file when it passed its
                                                 checks: a later use with the same size and time skips hashing
    weights/<published file name>.lock           held while one process downloads or checks the file

A file that fails its checks is deleted, and the error names it. A file put at the cache path by hand (the
offline error says where) is checked on first use like a downloaded one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from maskrcnn.errors import UserError
from maskrcnn.http import FetchError, HttpClient
from maskrcnn.io import atomic_write_json
from maskrcnn.zoo.registry import WeightsEntry

HASH_BLOCK = 1 << 20


def weights_home() -> Path:
    """``$MASKRCNN_HOME``, else ``~/.cache/maskrcnn``."""
    return Path(os.environ.get("MASKRCNN_HOME") or Path.home() / ".cache" / "maskrcnn").expanduser()


def cache_path(entry: WeightsEntry, home: Path | None = None) -> Path:
    """Where ``entry``'s file lives (or is to be put) in the cache."""
    return (home or weights_home()) / "weights" / entry.file_name


def fetch(
    entry: WeightsEntry, *, home: Path | None = None, http: HttpClient | None = None, progress: bool | None = None
) -> Path:
    """The path of ``entry``'s file in the cache, downloaded first if missing, checked before first use.

    progress: a progress bar on stderr (default: when stderr is a terminal). Raises UserError naming the URL and
    the cache path when the download fails, or naming the deleted file when it fails its checks.
    """
    path = cache_path(entry, home)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _fetch_locked(entry, path, http, progress)
    except OSError as e:  # a cache folder that cannot be written, a full disk
        where = e.filename or path.parent
        reason = e.strerror or e
        raise UserError(f"cannot write the weights cache at {where}: {reason} (MASKRCNN_HOME moves it)") from None


def _fetch_locked(entry: WeightsEntry, path: Path, http: HttpClient | None, progress: bool | None) -> Path:
    with _locked(path.with_name(path.name + ".lock")):
        if not path.is_file():
            client = http or HttpClient(user_agent="maskrcnn-weights")
            try:
                # into <name>.part, continued by the next call when interrupted; renamed to <name> when complete.
                # Checked right after: a process killed before that leaves no stamp, so the next use checks it.
                client.download(entry.url, path, progress=_progress(progress), keep_partial=True)
            except FetchError as e:
                raise UserError(
                    f"cannot download {entry.name} from {entry.url}: {e.reason}; to use it offline, download that "
                    f"URL elsewhere and put the file at {path}"
                ) from None
            _write_stamp(path, _check(entry, path, shown_as=path))
            size = path.stat().st_size / 2**20
            print(f"downloaded {entry.name} ({size:.1f} MiB, checked) -> {path}", file=sys.stderr)
        elif not _stamp_matches(path):
            _write_stamp(path, _check(entry, path, shown_as=path))
    return path


def is_cached(entry: WeightsEntry, home: Path | None = None) -> bool:
    return cache_path(entry, home).is_file()


def _progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


# ---- checks -------------------------------------------------------------------------------------------------------


def _check(entry: WeightsEntry, path: Path, *, shown_as: Path) -> str:
    """Hash ``path`` and compare with every digest ``entry`` records -> its SHA-256. On a mismatch the file is
    deleted and UserError names it (as ``shown_as``) and says which check failed."""
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            sha256.update(block)
            md5.update(block)
    got_sha256, got_md5 = sha256.hexdigest(), md5.hexdigest()
    failures = []
    if entry.sha256 and got_sha256 != entry.sha256:
        failures.append(f"SHA-256 {got_sha256} is not {entry.sha256} (as recorded from {entry.sha256_source})")
    if entry.sha256_prefix and not got_sha256.startswith(entry.sha256_prefix):
        failures.append(f"SHA-256 {got_sha256} does not start with {entry.sha256_prefix} as the file name says")
    if entry.md5_prefix and not got_md5.startswith(entry.md5_prefix):
        failures.append(f"MD5 {got_md5} does not start with {entry.md5_prefix} as the file name says")
    if failures:
        path.unlink(missing_ok=True)
        _stamp(shown_as).unlink(missing_ok=True)
        raise UserError(
            f"{shown_as} failed its checksum check and was deleted: {'; '.join(failures)} "
            f"(run again to download {entry.url} anew)"
        )
    return got_sha256


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified.json")


def _write_stamp(path: Path, sha256: str) -> None:
    st = path.stat()
    atomic_write_json(_stamp(path), {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def _stamp_matches(path: Path) -> bool:
    """Whether ``path`` is the file that passed its checks (same size and modification time)."""
    try:
        stamp = json.loads(_stamp(path).read_text())
        st = path.stat()
        return stamp["size"] == st.st_size and stamp["mtime_ns"] == st.st_mtime_ns
    except (OSError, ValueError, KeyError, TypeError):
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing), so that the processes of one distributed run
    download a file once. A no-op where ``fcntl`` does not exist."""
    try:
        import fcntl
    except ImportError:  # Windows: no locking
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
