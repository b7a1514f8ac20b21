"""Read a pickle of numpy arrays without letting it run code.

Unpickling calls whatever importable function a file names (``os.system`` with any argument is three opcodes), so
an untrusted ``.pkl`` is never given to ``pickle.load``. This unpickler resolves only the names in ``_ALLOWED``;
any other name stops the read before anything is called, with one line naming it:

    >>> load_numpy_pickle(Path("model_final_f10217.pkl"))          # {"model": {name: ndarray}, "__author__": ...}
    >>> load_numpy_pickle(Path("evil.pkl"))
    UserError: refused to read evil.pkl: it asks for posix.system, and only numpy arrays ... (nothing was run)

Plain containers and scalars (dict, list, tuple, str, bytes, int, float, bool, None) need no names at all.
"""

from __future__ import annotations

import collections
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from maskrcnn.errors import UserError


class _Refused(pickle.UnpicklingError):
    """What a file asked for that it may not have: a name outside _ALLOWED, or a value the constructors refuse."""


def _reconstruct(subtype: type, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's array constructor for pickles (protocols 2-4), limited to plain ndarrays (no subclass runs code)."""
    if subtype is not np.ndarray:
        raise _Refused(f"an array of type {subtype!r}")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _dtype(*args: Any) -> np.dtype:
    """numpy's dtype, without the object dtype (whose arrays hold arbitrary pickled objects)."""
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise _Refused("an array of Python objects (dtype object)")
    return dtype


def _frombuffer(buffer: Any, dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    """numpy's array constructor for protocol-5 pickles: an array over the pickled bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise _Refused("an array of Python objects (dtype object)")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _scalar(dtype: np.dtype, data: Any = None) -> Any:
    """numpy's scalar constructor (an np.float32 value and the like), from its raw bytes."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise _Refused("a numpy scalar that is not made of bytes")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """How protocol-2 pickles written by Python 3 store bytes (the array data): ``_codecs.encode(text, "latin1")``."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise _Refused(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


# The only names a file may ask for, each mapped to what it gets instead of the real object where the real one does
# more than building an array. numpy moved numpy.core to numpy._core in 2.0: files name one or the other.
_ALLOWED: dict[tuple[str, str], Any] = {
    # arrays, protocols 2-4: _reconstruct(ndarray, (0,), b"b") makes an empty array; BUILD then calls
    # ndarray.__setstate__ with shape, dtype and raw bytes.
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,  # the array type, an argument of _reconstruct
    ("numpy", "dtype"): _dtype,  # element types ("f4", "i8", ...); BUILD sets byte order
    # arrays, protocol 5: _frombuffer(bytes, dtype, shape, order)
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    # numpy scalars (np.float32(0.5) as a value), from their bytes
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    # protocol 2 stores bytes objects as latin-1 text to re-encode
    ("_codecs", "encode"): _latin1_encode,
    # detectron2 keeps parameters in insertion order
    ("collections", "OrderedDict"): collections.OrderedDict,
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """find_class answers from _ALLOWED only; persistent ids (torch's tensor storages) are refused too."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise _Refused(f"{module}.{name}")
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"a persistent id ({type(pid).__name__})")


def load_numpy_pickle(path: Path) -> Any:
    """Unpickle ``path`` allowing only numpy arrays, numpy scalars and plain Python containers.

    UserError naming the file and what it asked for when it wants anything else, and naming the file when it is
    not a complete pickle. Strings of Python 2 pickles are read as latin-1 (as detectron2 reads its files).
    """
    try:
        with open(path, "rb") as f:
            if f.read(4) == b"PK\x03\x04":  # a zip archive's first bytes; unpickled, "P" would be an opcode
                raise UserError(f"{path} is a zip archive (a PyTorch checkpoint?), not a pickle")
            f.seek(0)
            return _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except OSError as e:
        raise UserError(f"cannot read weights file {path}: {e.strerror or e}") from None
    except UserError:
        raise
    except _Refused as e:
        raise UserError(
            f"refused to read {path}: it asks for {e}, and only numpy arrays and plain containers are allowed in a "
            f"weights pickle (nothing was run)"
        ) from None
    except Exception as e:  # noqa: BLE001 - truncated or garbled: EOFError, ValueError, struct.error, ...
        raise UserError(f"cannot read weights file {path}: not a complete pickle ({type(e).__name__}: {e})") from None
