"""Shared fixtures of the extractor tests."""

from __future__ import annotations

import pytest
import soundfile as sf

#: the sample rate every audio extractor reads
SR = 16000


@pytest.fixture(scope="module")
def speech(assets_dir):
    """tests/assets/speech.wav as float32 at 16 kHz."""
    x, sr = sf.read(str(assets_dir / "speech.wav"), dtype="float32")
    assert sr == SR
    return x
