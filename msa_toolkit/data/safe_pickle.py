"""Reading untrusted pickles (MMSA and MAG-BERT / MInD files) without running their code.

The standard unpickler calls whatever global a file names (``os.system``, ``builtins.exec``, ...), so a
pickle downloaded from anywhere could run code on import. :func:`load_pickle` unpickles through
:class:`RestrictedUnpickler`, whose ``find_class`` admits only the globals that plain data needs:

==========================================  ==================================================
global                                      why
==========================================  ==================================================
``numpy._core.multiarray._reconstruct``,    numpy arrays (``numpy.core.multiarray`` in files
``numpy.ndarray``, ``numpy.dtype``          written by numpy 1.x)
``numpy._core.multiarray.scalar``           numpy scalars (``np.float32(1.5)``, ``np.str_``)
``numpy._core.numeric._frombuffer``         arrays in protocol-5 pickles
``_codecs.encode`` (latin-1 only)           ``bytes`` in protocol-2 pickles
``builtins``: ``set``, ``frozenset``,       containers and numbers that have no opcode of their
``complex``, ``bytearray``, ``slice``       own (``__builtin__`` in Python 2 files)
``collections.OrderedDict``                 an ordered dict
==========================================  ==================================================

Dicts, lists, tuples, strings, bytes, ints, floats, booleans and None need no global. Any other
global is refused, before it is imported or called, with a :class:`~msa_toolkit.errors.DatasetError`
naming it (``module.name``).

The numpy globals are admitted in the shapes numpy's own pickles use them, because numpy trusts a
pickle's bytes: ``numpy.ndarray`` called with a buffer and an object dtype reads the bytes as
pointers. So ``numpy.ndarray`` stands for a subclass that can only be made through
``_reconstruct``; dtypes are numbers, booleans, strings, bytes or objects (no structured ``V``,
no datetimes), always fresh copies, and a dtype whose pickled state differs from the state numpy
gives that type (flags, item size, fields) is refused before any array or scalar uses it.
Arrays come back as plain ``numpy.ndarray``. What a file gets for a global cannot be changed by it
(pickle's ``BUILD`` sets attributes on whatever is on its stack): the numpy stand-ins refuse it.
"""

from __future__ import annotations

import collections
import importlib
import io
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DatasetError

#: dtype kinds a file may use: bool, ints, floats, complex, str, bytes, Python objects
DTYPE_KINDS = "biufcUSO"
_BUILTINS = {"set": set, "frozenset": frozenset, "complex": complex, "bytearray": bytearray, "slice": slice}


def _numpy_core(sub: str, name: str) -> Any:
    """``numpy._core.<sub>.<name>`` (``numpy.core`` before numpy 2)."""
    for mod in (f"numpy._core.{sub}", f"numpy.core.{sub}"):
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise AttributeError(f"numpy has no {sub}.{name}")


def _checked_dtype(d: Any) -> np.dtype:
    """A fresh dtype equal to ``d``, refused unless its kind is in :data:`DTYPE_KINDS` and its state is
    the one numpy gives that type (a pickle's ``BUILD`` can set any flags, item size or fields on a
    dtype). Fresh: arrays keep the dtype object they are given, and the file could ``BUILD`` its own
    again after an array took it."""
    if not isinstance(d, np.dtype):
        if not isinstance(d, (str, bytes)):
            raise pickle.UnpicklingError(f"a dtype given as {type(d).__name__}")
        d = np.dtype(d.decode("latin-1") if isinstance(d, bytes) else d)
    if d.kind not in DTYPE_KINDS or d.fields is not None or d.subdtype is not None:
        raise pickle.UnpicklingError(f"dtype {d.str!r} is not allowed (only {DTYPE_KINDS} kinds)")
    fresh = np.dtype(d.str)
    if d.__reduce__()[2] != fresh.__reduce__()[2]:
        raise pickle.UnpicklingError(f"dtype {d.str!r} has a tampered state")
    return fresh


def _dtype(spec: Any, align: bool = False, copy: bool = True) -> np.dtype:
    """``numpy.dtype`` as pickles call it, always a fresh copy (``BUILD`` may then change it; every
    use checks it again)."""
    base = _checked_dtype(spec)
    return np.dtype(base, align=bool(align), copy=True)


class _Frozen(type):
    """A class a pickle cannot change (``BUILD`` on the class itself)."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise pickle.UnpicklingError(f"a pickle may not set attributes of {cls.__name__}")


class _Global:
    """A function as a file gets it: callable, without attributes a pickle could set."""

    __slots__ = ("_f",)

    def __init__(self, f: Callable[..., Any]):
        object.__setattr__(self, "_f", f)

    def __call__(self, *args: Any) -> Any:
        return self._f(*args)

    def __setattr__(self, name: str, value: Any) -> None:
        raise pickle.UnpicklingError(f"a pickle may not set attributes of {self._f.__name__}")


class _Array(np.ndarray, metaclass=_Frozen):
    """What ``numpy.ndarray`` means in a file: only ``_reconstruct`` makes one (``numpy.ndarray``'s
    constructor would read a buffer's bytes as object pointers), and its state's dtype is checked."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("numpy.ndarray called directly")

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("malformed numpy array state")
        np.ndarray.__setstate__(self, (*state[:-3], _checked_dtype(state[-3]), *state[-2:]))


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not _Array:
        raise pickle.UnpicklingError("_reconstruct of something other than numpy.ndarray")
    return _numpy_core("multiarray", "_reconstruct")(_Array, shape, _checked_dtype(dtype))


def _scalar(dtype: Any, *args: Any) -> Any:
    return _numpy_core("multiarray", "scalar")(_checked_dtype(dtype), *args)


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _numpy_core("numeric", "_frombuffer")(buf, _checked_dtype(dtype), shape, order)


def _latin1_encode(obj: Any, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``: latin-1 only."""
    if not isinstance(obj, str) or encoding.lower().replace("-", "").replace("_", "") != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return obj.encode("latin-1")


_NUMPY = {("multiarray", "_reconstruct"): _Global(_reconstruct), ("multiarray", "scalar"): _Global(_scalar),
          ("numeric", "_frombuffer"): _Global(_frombuffer)}
#: (module, name) a file may name -> what it gets
ALLOWED: dict[tuple[str, str], Any] = {
    **{(f"numpy.{core}.{sub}", name): f for core in ("core", "_core") for (sub, name), f in _NUMPY.items()},
    ("numpy", "ndarray"): _Array,
    ("numpy", "dtype"): _Global(_dtype),
    ("_codecs", "encode"): _Global(_latin1_encode),
    ("collections", "OrderedDict"): collections.OrderedDict,
    **{(mod, name): v for mod in ("builtins", "__builtin__") for name, v in _BUILTINS.items()},
}


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle names a global outside :data:`ALLOWED`."""

    def __init__(self, module: str, name: str):
        self.qualname = f"{module}.{name}"
        super().__init__(f"names the global {self.qualname}, which is not loaded (only plain data and numpy "
                         "arrays are: other code named in a pickle would run)")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals in :data:`ALLOWED` (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        found = ALLOWED.get((module, name))
        if found is None:
            raise ForbiddenGlobal(module, name)
        return found


def _plain(obj: Any) -> Any:
    """``obj`` with every :class:`_Array` in it (in dicts, lists, tuples, object arrays) a plain ndarray,
    and every dtype checked again (:func:`_checked_dtype`: the file may have changed one after use)."""
    if isinstance(obj, np.dtype):
        return _checked_dtype(obj)
    if isinstance(obj, np.ndarray):
        arr = obj.view(np.ndarray) if type(obj) is _Array else obj
        if arr.dtype.kind == "O":
            for i in np.ndindex(arr.shape):
                if isinstance(arr[i], (np.ndarray, np.dtype, dict, list, tuple)):
                    arr[i] = _plain(arr[i])
        return arr
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = _plain(v)
    elif isinstance(obj, list):
        obj[:] = [_plain(v) for v in obj]
    elif isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return obj


def loads(data: bytes) -> Any:
    """Unpickle ``data`` through :class:`RestrictedUnpickler` (errors as ``pickle.UnpicklingError``)."""
    return _plain(RestrictedUnpickler(io.BytesIO(data)).load())


def load_pickle(path: Path) -> Any:
    """The content of pickle file ``path``, read through :class:`RestrictedUnpickler`; a missing,
    unreadable or code-naming file is a :class:`DatasetError` (one line, naming the file)."""
    if not path.is_file():
        raise DatasetError(f"{path}: file not found")
    try:
        with open(path, "rb") as fh:
            return _plain(RestrictedUnpickler(fh).load())
    except ForbiddenGlobal as e:
        raise DatasetError(f"{path}: refused: the pickle {e}") from None
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad input file
        raise DatasetError(f"{path}: cannot read as a pickle ({type(e).__name__}: {e})") from None


__all__ = ["ALLOWED", "DTYPE_KINDS", "ForbiddenGlobal", "RestrictedUnpickler", "load_pickle", "loads"]
