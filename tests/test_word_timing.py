"""align_transcript: human transcript words timed from recognised words (hand-made word lists)."""

from __future__ import annotations

import math

import pytest

from msa_toolkit.features import Word
from msa_toolkit.word_timing import MIN_WORD_MATCH, align_transcript, normalize_word

#: "i really love this movie" as a recogniser would time it, 0.5 s to 2.5 s
ASR = [Word("I", 0.5, 0.6, 0.9), Word("really", 0.7, 1.1, 0.9), Word("love", 1.2, 1.5, 0.9),
       Word("this", 1.6, 1.9, 0.9), Word("movie.", 2.0, 2.5, 0.9)]


def _check(words, duration):
    starts = [w.start for w in words]
    ends = [w.end for w in words]
    assert all(math.isfinite(t) for t in starts + ends)
    assert all(0.0 <= s <= e <= duration for s, e in zip(starts, ends))
    assert starts == sorted(starts) and ends == sorted(ends)
    assert all(e <= s for e, s in zip(ends, starts[1:]))  # no overlap


def test_normalize():
    assert normalize_word("Movie,") == "movie" and normalize_word("It's") == "its" and normalize_word("--") == ""


def test_exact_transcript_takes_the_recognised_times():
    words, frac = align_transcript("I really love this movie".split(), ASR, 6.0)
    assert frac == 1.0 and [w.text for w in words] == ["I", "really", "love", "this", "movie"]
    assert [(w.start, w.end) for w in words] == [(w.start, w.end) for w in ASR]


def test_missing_word_in_the_label_keeps_the_others_matched():
    words, frac = align_transcript("I love this movie".split(), ASR, 6.0)
    assert frac == 1.0 and [(w.start, w.end) for w in words] == [(0.5, 0.6), (1.2, 1.5), (1.6, 1.9), (2.0, 2.5)]


def test_extra_label_word_is_interpolated_between_its_neighbours():
    words, frac = align_transcript("I really love this great movie".split(), ASR, 6.0)
    assert frac == pytest.approx(5 / 6)
    great = words[4]
    assert great.text == "great" and 1.9 <= great.start <= great.end <= 2.0
    _check(words, 6.0)


def test_misspelling_matches_fuzzily_and_a_wrong_word_is_interpolated():
    words, frac = align_transcript("I realy love that movie".split(), ASR, 6.0)
    assert words[1].text == "realy" and (words[1].start, words[1].end) == (0.7, 1.1)  # fuzzy match
    assert frac == pytest.approx(4 / 5)  # "that" vs "this" is not a match ...
    assert 1.5 <= words[3].start <= words[3].end <= 2.0  # ... and is placed in the gap
    _check(words, 6.0)


def test_leading_and_trailing_extra_words_stay_inside_the_clip():
    words, frac = align_transcript("well I really love this movie a lot".split(), ASR, 3.0)
    assert frac == pytest.approx(5 / 8)
    assert words[0].end <= 0.5 and words[-1].start >= 2.5
    _check(words, 3.0)


def test_no_recognised_words_spreads_over_the_clip_by_length():
    words, frac = align_transcript(["a", "bbb"], [], 4.0)
    assert frac == 0.0
    assert [(w.start, w.end) for w in words] == [(0.0, 1.0), (1.0, 4.0)]
    assert frac < MIN_WORD_MATCH


def test_unrelated_speech_matches_little_and_times_stay_valid():
    words, frac = align_transcript("the weather is cold today".split(), ASR, 6.0)
    assert frac < MIN_WORD_MATCH
    _check(words, 6.0)


def test_times_are_clamped_to_the_duration_and_overlaps_removed():
    asr = [Word("a", -0.2, 0.5), Word("b", 0.4, 1.0), Word("c", 1.5, 9.0)]
    words, frac = align_transcript(["a", "b", "c"], asr, 2.0)
    assert frac == 1.0 and [(w.start, w.end) for w in words] == [(0.0, 0.4), (0.4, 1.0), (1.5, 2.0)]


def test_empty_transcript_and_punctuation_only_words():
    assert align_transcript([], ASR, 6.0) == ([], 1.0)
    words, frac = align_transcript(["I", "-", "really"], ASR, 6.0)
    assert frac == 1.0 and len(words) == 3  # the dash is not counted, but timed
    _check(words, 6.0)
