"""The shared I/O helpers: atomic writes with user file modes, NaN-safe JSON, extension lists."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from msa_toolkit import _io, media


def test_atomic_write_gives_the_usual_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "sub" / "out.json"
        _io.atomic_write_json(target, {"a": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]  # no temp file left


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")

    def boom(tmp):
        open(tmp, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        _io.atomic_write(target, boom)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_json_is_standard_and_nan_safe():
    text = _io.dumps_json({"nan": float("nan"), "inf": [float("inf"), 1.5], "np": np.float32(2.5),
                           "arr": np.array([1, 2]), "i": np.int64(3), "nested": {"x": np.float64("nan")}})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"nan": None, "inf": [None, 1.5], "np": 2.5, "arr": [1, 2], "i": 3,
                                "nested": {"x": None}}


def test_one_extension_list():
    assert media.MEDIA_EXTENSIONS is _io.MEDIA_EXTENSIONS
    assert {".wav", ".mp3", ".flac", ".m4a", ".ogg", ".mp4", ".mkv"} <= _io.MEDIA_EXTENSIONS
    assert _io.is_media_file("a/B.MP4") and not _io.is_media_file("notes.txt")
