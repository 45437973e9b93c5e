"""issue 31: MMSA / MAG-BERT pickles are read through a restricted unpickler: a pickle that names code
never runs it (``msa dataset import`` exits 2 with one line naming the global), real files still load."""

from __future__ import annotations

import os
import pickle
import pickletools
import struct

import numpy as np
import pytest

from msa_toolkit.cli.main import main
from msa_toolkit.data.safe_pickle import load_pickle, loads
from msa_toolkit.errors import DatasetError


class _Exec:
    """Unpickling this runs ``exec(code)`` with a plain ``pickle.load``."""

    def __init__(self, code: str):
        self.code = code

    def __reduce__(self):
        return exec, (self.code,)


def _touch(marker) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


def _mmsa_dict(evil=None) -> dict:
    rng = np.random.default_rng(0)
    split = {"raw_text": np.array(["x", "y"], dtype=object),
             "text": rng.normal(size=(2, 3, 4)).astype(np.float32),
             "audio": rng.normal(size=(2, 3, 2)).astype(np.float32),
             "vision": rng.normal(size=(2, 3, 2)).astype(np.float32),
             "regression_labels": np.array([0.5, -1.0], dtype=np.float32)}
    if evil is not None:
        split["annotations"] = evil
    return {s: dict(split, id=np.array([f"{s}$_$1", f"{s}$_$2"], dtype=object)) for s in ("train", "valid", "test")}


@pytest.mark.parametrize("where", ["top", "nested"])
def test_import_of_a_code_pickle_runs_nothing_and_exits_2_in_one_line(tmp_path, capsys, where):
    marker = tmp_path / "marker"
    evil = _Exec(_touch(marker))
    pkl = tmp_path / "evil.pkl"
    pkl.write_bytes(pickle.dumps(evil if where == "top" else _mmsa_dict(evil)))
    assert main(["dataset", "import", str(pkl), "-o", str(tmp_path / "ds")]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "builtins.exec" in err and str(pkl) in err
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("target,args", [(os.system, ("true",)), (getattr, (object, "mro"))])
def test_other_globals_are_refused_by_name(tmp_path, target, args):
    class Evil:
        def __reduce__(self):
            return target, args

    p = tmp_path / "e.pkl"
    p.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DatasetError, match=rf"refused.*{target.__module__}\.{target.__name__}"):
        load_pickle(p)


def _global_names(data: bytes) -> set[str]:
    """The globals a pickle names (GLOBAL and STACK_GLOBAL)."""
    names, strings = set(), []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            names.add(arg.replace(" ", "."))
        elif isinstance(arg, str):
            strings.append(arg)
        if op.name == "STACK_GLOBAL":
            names.add(".".join(strings[-2:]))
    return names


@pytest.mark.parametrize("protocol,numpy1", [(2, False), (4, False), (5, False), (2, True)])
def test_arrays_scalars_and_containers_load_in_every_protocol(protocol, numpy1):
    """What MMSA / MAG-BERT files hold loads as plain ndarrays; ``numpy1``: the file names numpy 1.x's
    ``numpy.core`` module paths (the reference files were written with numpy 1.x)."""
    data = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "f": np.asfortranarray(np.ones((2, 3))),
            "big": np.arange(3, dtype=">i4"), "s": np.array(["ab", "c"], dtype=object),
            "u": np.array(["xy", "z"]), "b": np.array([b"q"]), "sc": np.float32(1.5), "i": np.int64(3),
            "t": (np.bool_(True), np.str_("w")), "l": [1, 2.5, None, "x", b"y", {1, 2}, complex(1, 2)],
            "items": [((np.array(["w1", "w2"]), np.zeros((2, 47)), np.zeros((2, 74))), np.array([[1.2]]), "seg")],
            "nested": np.array([np.arange(2), np.arange(3)], dtype=object)}
    raw = pickle.dumps(data, protocol=protocol)
    ref = pickle.loads(raw)  # what a plain load gives (numpy reads ">i4" as native int32, except protocol 5)
    if numpy1:
        raw = raw.replace(b"numpy._core.", b"numpy.core.")
        assert "numpy.core.multiarray._reconstruct" in _global_names(raw)
    got = loads(raw)
    for k in ("a", "f", "big", "s", "u", "b"):
        assert type(got[k]) is np.ndarray and got[k].dtype == ref[k].dtype
        np.testing.assert_array_equal(got[k], data[k])
    assert got["f"].flags.f_contiguous and got["sc"] == np.float32(1.5) and type(got["sc"]) is np.float32
    assert got["t"] == (True, "w") and got["l"] == data["l"] and got["i"] == 3
    (w, v, a), label, seg = got["items"][0]
    assert type(w) is np.ndarray and list(w) == ["w1", "w2"] and v.shape == (2, 47) and seg == "seg"
    assert all(type(x) is np.ndarray for x in got["nested"])


def test_numpy_in_unsafe_shapes_is_refused():
    """numpy's constructor reads buffer bytes as object pointers; dtype states can be tampered with."""

    class DirectArray:
        def __reduce__(self):
            return np.ndarray, ((1,), np.dtype("O"), bytearray(8))

    # NEWOBJ: numpy.ndarray.__new__(numpy.ndarray, (1,), dtype("O8"), bytearray(8)), written by hand
    newobj = (b"\x80\x02cnumpy\nndarray\nK\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R"
              b"c__builtin__\nbytearray\nK\x08\x85R\x87\x81.")
    for raw in (pickle.dumps(DirectArray(), protocol=2), newobj):
        with pytest.raises(pickle.UnpicklingError, match="directly"):
            loads(raw)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        loads(pickle.dumps(np.zeros(2, dtype=[("a", "O")])))

    with pytest.raises(pickle.UnpicklingError, match="tampered"):
        loads(pickle.dumps(_TamperedArray()))


class _TamperedDtype:
    """A unicode dtype given the object flags by its state (numpy would decref its bytes as pointers)."""

    def __reduce__(self):
        return np.dtype, ("U2", False, True), (3, "<", None, None, None, 8, 4, 0x3F)


class _TamperedArray:
    def __reduce__(self):
        from msa_toolkit.data.safe_pickle import _numpy_core

        return (_numpy_core("multiarray", "_reconstruct"), (np.ndarray, (0,), b"b"),
                (1, (1,), _TamperedDtype(), False, "ab".encode("utf-32-le")))


@pytest.mark.parametrize("target", ["numpy.ndarray", "numpy.dtype", "numpy._core.multiarray._reconstruct"])
def test_a_pickle_cannot_change_what_it_is_given_for_a_global(target):
    """pickle's BUILD sets attributes on any object on its stack, globals included: refused, nothing changes."""
    module, name = target.rsplit(".", 1)
    raw = (b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n"
           + b"N}q\x00X\x07\x00\x00\x00__new__q\x01Ns\x86q\x02b.")  # BUILD(global, (None, {"__new__": None}))
    with pytest.raises((pickle.UnpicklingError, TypeError)):  # TypeError: the class's own __setstate__, unbound
        loads(raw)
    raw = b"\x80\x02c" + module.encode() + b"\n" + name.encode() + b"\n}q\x00X\x01\x00\x00\x00xq\x01K\x01sb."
    with pytest.raises(Exception):  # BUILD(global, {"x": 1}): no __dict__ to update
        loads(raw)
    assert loads(pickle.dumps(np.arange(3))).tolist() == [0, 1, 2]
    test_numpy_in_unsafe_shapes_is_refused()  # the guards are all still there


def _binunicode(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _dtype_state(flags: int) -> bytes:
    """The pickled state tuple (3, '<', None, None, None, 8, 4, flags) of a U2 dtype (flags 8 is numpy's)."""
    return b"(K\x03" + _binunicode("<") + b"NNNK\x08K\x04K" + bytes([flags]) + b"t"


def test_a_dtype_tampered_after_an_array_took_it_does_not_reach_the_array():
    """Arrays keep the dtype object they are given; a file can BUILD its dtype again afterwards (memo)."""
    raw = (b"\x80\x02]q\x00("
           b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"  # A = _reconstruct(...)
           b"(K\x01K\x01\x85cnumpy\ndtype\n" + _binunicode("U2") + b"\x89\x88\x87Rq\x01" + _dtype_state(8) + b"b"
           b"\x89C\x08" + "ab".encode("utf-32-le") + b"tb"  # BUILD A with (1, (1,), D, False, b"...")
           b"h\x01" + _dtype_state(0x3F) + b"b"  # D given the object flags after A took it
           b"e.")
    with pytest.raises(pickle.UnpicklingError, match="tampered"):  # D itself is in the list: refused
        loads(raw)
    raw = raw.replace(b"h\x01" + _dtype_state(0x3F) + b"b", b"h\x01" + _dtype_state(0x3F) + b"b0")  # D popped
    (arr,) = loads(raw)
    assert arr.tolist() == ["ab"] and arr.dtype.flags == np.dtype("U2").flags
