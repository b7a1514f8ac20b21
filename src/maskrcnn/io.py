"""Atomic file writes: a reader never sees a half-written file; output folders; json files read with one clear
error.

Every writer goes to a temporary file in the destination's folder, flushes it to disk, then renames it over the
destination (``os.replace`` is atomic on POSIX and Windows when both paths are on one file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from maskrcnn.errors import UserError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` (its path is ``f.name``); on clean exit it replaces ``path``, on error it
    is removed.

    >>> with atomic_open("out.json", "w") as f:
    ...     f.write("{}")
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes only, got mode {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:  # f.name: the temp file's path
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def output_folder(path: str | os.PathLike) -> Path:
    """Create the folder ``path`` and its parents -> ``path``; ``UserError`` when it is a file or cannot be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"output is not a folder: {path}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {path}: {e.strerror or e}") from None
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = None) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent)


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch  # here, not at the top: the Open Images download and the converters never load torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def read_json(path: str | os.PathLike, *, what: str) -> Any:
    """Parse the json file ``path``. ``UserError`` naming it (as ``what``, e.g. "results file") when it is missing, a
    folder, unreadable, not UTF-8 or not valid json."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} is a folder, expected a json file: {path}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{what} {path} is not valid json: {e.msg} at line {e.lineno} column {e.colno}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path} is not valid json: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
