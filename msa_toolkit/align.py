"""Word-level alignment: one feature vector per transcript word (the field's "aligned" setting).

Audio and visual frames are averaged inside each word's ``[start, end)`` span,
as CMU-MultimodalSDK-style aligned features do. Masked frames (e.g. no face)
are excluded from the average. A word shorter than one frame period may contain
no frame centre: it then takes the valid frame nearest its midpoint, if that
frame lies within one frame period; otherwise the word row is zero and masked.

Text is pooled per word too: the mean of the word's sub-word token states
(``text.word_index``). ``[CLS]``/``[SEP]`` have no word and are dropped from the
aligned text sequence; the token ids, attention mask and word map stay in the
bundle's arrays unchanged so models that fine-tune the encoder still can.
Words cut off by the encoder's ``max_length`` have no tokens: zero and masked.

:func:`align_bundle` applies both to every sequence of one extracted file (the
extraction runner's "align" step, and :func:`~msa_toolkit.extraction.extract_texts`).

A user-supplied transcript (label file, sidecar ``.txt``) has no word times: the runner
recognises the speech with Whisper anyway and :func:`time_transcript` maps the user's words
onto the recognised ones (:mod:`msa_toolkit.word_timing`), keeping the user's text.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .features import FeatureSequence, Segment, Transcript, Word
from .spec import FeatureSpec
from .word_timing import align_transcript


def needs_timing(transcript: Transcript | None) -> bool:
    """True when ``transcript`` has a word without start or end time (user-supplied text)."""
    return transcript is not None and any(w.start != w.start or w.end != w.end for w in transcript.words)


def time_transcript(user: Transcript, recognised: Transcript | None,
                    duration: float | None) -> tuple[Transcript, float]:
    """``user``'s words timed from the ``recognised`` words of the same clip, and the fraction matched.

    The text, language and source of ``user`` are kept; its segments become one segment
    spanning the timed words. See :func:`msa_toolkit.word_timing.align_transcript`.
    """
    words, matched = align_transcript(user.words, recognised.words if recognised is not None else (), duration)
    segs = (Segment(user.text, words[0].start, words[-1].end, 0, len(words)),) if words else ()
    return Transcript(tuple(words), segs, user.language, user.source), matched


def word_spans(words: Sequence[Word]) -> tuple[np.ndarray, np.ndarray]:
    """float64 start and end arrays of the words; raises ValueError when any timing is unknown."""
    starts = np.array([w.start for w in words], dtype=np.float64)
    ends = np.array([w.end for w in words], dtype=np.float64)
    if np.isnan(starts).any() or np.isnan(ends).any():
        raise ValueError("word-level alignment needs word timings; the transcript has words without times "
                         "(user-supplied text): enable asr (Whisper) so they are timed from the speech, "
                         "or use align='none'")
    return starts, np.maximum(ends, starts)


def align_frames(seq: FeatureSequence, words: Sequence[Word], frame_rate: float | None = None) -> FeatureSequence:
    """Average the valid frames of ``seq`` inside each word span -> ``[n_words, D]``.

    ``frame_rate`` bounds the nearest-frame fallback for very short words (estimated
    from ``seq.times`` when omitted).
    """
    starts, ends = word_spans(words)
    # compare at the float32 precision frame times are stored with, so boundaries are exact
    starts = starts.astype(np.float32).astype(np.float64)
    ends = ends.astype(np.float32).astype(np.float64)
    n, d = len(words), seq.dim
    values = np.zeros((n, d), np.float32)
    mask = np.zeros(n, bool)
    times = seq.times.astype(np.float64)
    valid = seq.mask
    if frame_rate is None:
        dt = np.diff(times)
        period = float(np.median(dt)) if dt.size else 0.0
    else:
        period = 1.0 / float(frame_rate)
    vt = times[valid]
    vv = seq.values[valid]
    if vt.size:
        lo = np.searchsorted(vt, starts, side="left")
        hi = np.searchsorted(vt, ends, side="left")
        # running sums make each word's mean O(1)
        csum = np.concatenate([np.zeros((1, d), np.float64), np.cumsum(vv, axis=0, dtype=np.float64)])
        for i in range(n):
            if hi[i] > lo[i]:
                values[i] = (csum[hi[i]] - csum[lo[i]]) / (hi[i] - lo[i])
                mask[i] = True
            else:
                mid = 0.5 * (starts[i] + ends[i])
                j = int(np.argmin(np.abs(vt - mid)))
                if abs(vt[j] - mid) <= period:
                    values[i] = vv[j]
                    mask[i] = True
    return FeatureSequence(values, starts.astype(np.float32), mask, list(seq.names))


def pool_tokens(seq: FeatureSequence, word_index: np.ndarray, words: Sequence[Word]) -> FeatureSequence:
    """Mean of each word's token states -> ``[n_words, D]``; times are word starts (NaN if unknown)."""
    n, d = len(words), seq.dim
    values = np.zeros((n, d), np.float32)
    mask = np.zeros(n, bool)
    word_index = np.asarray(word_index).reshape(-1)
    for i in range(n):
        sel = word_index == i
        if sel.any():
            values[i] = seq.values[sel].mean(axis=0)
            mask[i] = True
    times = np.array([w.start for w in words], dtype=np.float32)
    return FeatureSequence(values, times, mask, list(seq.names))


def align_bundle(sequences: Mapping[str, FeatureSequence], arrays: Mapping[str, np.ndarray],
                 transcript: Transcript | None, spec: FeatureSpec) -> dict[str, FeatureSequence]:
    """Word-level versions of every sequence of one file.

    Text is pooled per word with ``arrays["text.word_index"]``; audio and vision are averaged
    per word span, bounded by the frame rate ``spec`` records for them.
    """
    if transcript is None:
        raise ValueError("word-level alignment needs a transcript")
    words = transcript.words
    out: dict[str, FeatureSequence] = {}
    for mod, seq in sequences.items():
        if mod == "text":
            out[mod] = pool_tokens(seq, arrays["text.word_index"], words)
        else:
            es = spec.get(mod)
            out[mod] = align_frames(seq, words, es.frame_rate if es else None)
    return out
