import numpy as np
import pytest

from msa_toolkit.features import FeatureBundle, FeatureSequence, Segment, Transcript, Word
from msa_toolkit.spec import ExtractorSpec, FeatureSpec


def test_bundle_roundtrip(tmp_path):
    spec = FeatureSpec((ExtractorSpec("opensmile", "audio", "1", {}, 3, 100.0, ("a", "b", "c")),))
    seq = FeatureSequence(np.random.rand(5, 3), np.arange(5) / 100, [True, True, False, True, True], ["a", "b", "c"])
    tr = Transcript((Word("hello", 0.0, 0.4, 0.9), Word("world", 0.5, 0.9, 0.8)), source="whisper")
    b = FeatureBundle(spec, {"audio": seq}, tr, {"text.input_ids": np.array([101, 7, 102])}, {"duration": 1.0})
    b.save(tmp_path / "clip")
    assert FeatureBundle.exists(tmp_path / "clip")
    b2 = FeatureBundle.load(tmp_path / "clip")
    assert b2.spec == spec
    np.testing.assert_allclose(b2.sequences["audio"].values, seq.values.astype(np.float32))
    assert b2.sequences["audio"].mask.tolist() == [True, True, False, True, True]
    assert b2.transcript.text == "hello world"
    assert b2.arrays["text.input_ids"].tolist() == [101, 7, 102]
    assert b2.meta["duration"] == 1.0


def test_sequence_validates_shapes():
    with pytest.raises(ValueError):
        FeatureSequence(np.zeros((3, 2)), np.zeros(2), np.ones(3, bool))


def test_transcript_srt_and_text():
    tr = Transcript.from_text("I love it")
    assert tr.text == "I love it" and not tr.is_empty
    assert Transcript().is_empty
    d = Transcript.from_dict(tr.to_dict())
    assert d.text == tr.text
    assert tr.to_srt() == ""  # user text without timings: no cue
    timed = Transcript(tr.words, (Segment("I love it", 0.5, 2.25, 0, 3),), source="whisper")
    assert timed.to_srt() == "1\n00:00:00,500 --> 00:00:02,250\nI love it\n\n"
    # the SRT written next to a bundle is made from the transcript's dict (extraction/outputs.py)
    assert Transcript.from_dict(timed.to_dict()).to_srt() == timed.to_srt()
