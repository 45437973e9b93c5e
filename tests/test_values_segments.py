"""SRT and segment timelines, value for value (issue 39 item 5).

``Transcript.to_srt`` is pinned to exact text (cue numbers, timestamps, rounding, hours); a
``--segments`` timeline is pinned to its segments' times and texts, and each segment's score must
equal the score of that segment's slice predicted on its own (a bundle holding only that slice's
words, audio and vision frames), within fp32 tolerance.
"""

from __future__ import annotations

import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from msa_toolkit.features import FeatureBundle, FeatureSequence, Segment, Transcript, Word
from msa_toolkit.models import create_model
from msa_toolkit.prediction import Predictor

NAN = float("nan")


def test_to_srt_exact():
    words = tuple(Word(w, NAN, NAN) for w in "a b c d e".split())
    tr = Transcript(words, (
        Segment("  Hello there. ", 0.0, 1.5, 0, 2),
        Segment("no timing", NAN, NAN, 2, 3),            # skipped: numbering stays contiguous
        Segment("Rounded", 61.0004, 61.0006, 3, 4),      # 61.0004 s -> ,000; 61.0006 s -> ,001
        Segment("Late", 3725.25, 3726.999, 4, 5),        # over an hour; 3726.999 s -> 01:02:06,999
    ), source="whisper")
    assert tr.to_srt() == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
        "2\n00:01:01,000 --> 00:01:01,001\nRounded\n\n"
        "3\n01:02:05,250 --> 01:02:06,999\nLate\n\n"
    )
    assert Transcript().to_srt() == ""
    assert Transcript.from_text("no times at all").to_srt() == ""


# -- segment timeline ------------------------------------------------------------------------------

DIMS = {"text": 4, "audio": 3, "vision": 2}


class WordEncoder:
    """A stand-in text encoder: one fixed vector per word (from its hash) between [CLS] and [SEP] rows."""

    @staticmethod
    def _vec(word: str) -> np.ndarray:
        h = hashlib.sha256(word.encode()).digest()
        return (np.frombuffer(h[:DIMS["text"]], np.uint8).astype(np.float32) - 128) / 64

    def encode(self, transcripts):
        out = []
        for t in transcripts:
            rows = [np.ones(DIMS["text"], np.float32)] + [self._vec(w.text) for w in t.words] + \
                   [-np.ones(DIMS["text"], np.float32)]
            v = np.stack(rows)
            seq = FeatureSequence(v, np.arange(len(v), dtype=np.float32), np.ones(len(v), bool))
            ids = np.arange(100, 100 + len(v), dtype=np.int64)
            out.append((seq, {"text.input_ids": ids, "text.attention_mask": np.ones(len(v), np.int64)}))
        return out


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(3)
    model = create_model("late_fusion", preset="tiny", **{f"{m}_dim": d for m, d in DIMS.items()},
                         text_len=20, audio_len=60, vision_len=30).eval()
    with torch.no_grad():  # larger weights than the initialisation's, so that scores depend visibly on inputs
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    rng = np.random.default_rng(1)
    norm = {m: {"mean": rng.normal(size=d).tolist(), "std": (1 + rng.random(d)).tolist()} for m, d in DIMS.items()}
    ck = SimpleNamespace(model=model, model_config={f"{m}_dim": d for m, d in DIMS.items()}, spec=None, path="ck",
                         extra={"normalize": True, "normalization": norm,
                                "max_lengths": {"text": 20, "audio": 60, "vision": 30}})
    return Predictor(ck, None, ("text", "audio", "vision"), _extractors=SimpleNamespace(
        extractors={"text": WordEncoder()}))


def _bundle():
    rng = np.random.default_rng(0)
    words = tuple(Word(w, 0.4 * i, 0.4 * i + 0.3) for i, w in enumerate("I really love it but the end was bad".split()))
    segs = (Segment(" I really love it", 0.0, 1.5, 0, 4),
            Segment("skipped: no timing", NAN, NAN, 4, 5),
            Segment("but the end was bad ", 1.6, 3.5, 4, 9),
            Segment("skipped: no words", 3.5, 3.6, 9, 9))
    t_a, t_v = np.arange(40) * 0.1, np.arange(15) * 0.25       # audio 10 fps, vision 4 fps over 4 s
    seqs = {"text": WordEncoder().encode([Transcript(words)])[0][0],
            "audio": FeatureSequence(rng.normal(size=(40, 3)).astype(np.float32), t_a, np.ones(40, bool)),
            "vision": FeatureSequence(rng.normal(size=(15, 2)).astype(np.float32), t_v, np.arange(15) % 4 != 1)}
    return FeatureBundle(None, seqs, Transcript(words, segs, source="whisper"))


def _alone(bundle: FeatureBundle, start: float, end: float, first: int, last: int) -> FeatureBundle:
    """The slice a segment covers as a bundle of its own: its words, and the frames with start <= t <= end."""
    tr = Transcript(bundle.transcript.words[first:last], source="whisper")
    seqs = {"text": WordEncoder().encode([tr])[0][0]}
    for m in ("audio", "vision"):
        s = bundle.sequences[m]
        idx = [i for i, t in enumerate(s.times) if start <= t <= end]
        seqs[m] = FeatureSequence(s.values[idx], s.times[idx], s.mask[idx])
    return FeatureBundle(None, seqs, tr)


def test_segment_timeline_times_texts_and_scores(predictor):
    bundle = _bundle()
    segs = predictor.predict_segments("clip.mp4", bundle)
    # only the timed segments with words, with their exact times and stripped texts, in order
    assert [(s.start, s.end, s.text) for s in segs] == [(0.0, 1.5, "I really love it"),
                                                         (1.6, 3.5, "but the end was bad")]
    alone = [predictor.predict_bundle("clip.mp4", _alone(bundle, 0.0, 1.5, 0, 4)).score,
             predictor.predict_bundle("clip.mp4", _alone(bundle, 1.6, 3.5, 4, 9)).score]
    np.testing.assert_allclose([s.score for s in segs], alone, rtol=1e-5, atol=1e-6)
    # the two segments score differently, and differ from the whole clip (the check has teeth)
    whole = predictor.predict_bundle("clip.mp4", bundle).score
    assert abs(alone[0] - alone[1]) > 1e-3 and min(abs(whole - a) for a in alone) > 1e-3
    # through predict_bundle(segments=True): the same timeline
    full = predictor.predict_bundle("clip.mp4", bundle, segments=True)
    assert full.score == pytest.approx(whole, abs=0) and full.segments == segs
