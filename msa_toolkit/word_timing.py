"""Word timings for a human transcript: map its words onto Whisper's timed words.

A label file's transcript (MMSA-FET's ``text`` column, a sidecar ``.txt``) has no
word times, yet word-level alignment (``--align words``) needs one ``[start, end)``
span per word. :func:`align_transcript` takes them from a speech recogniser's
words of the same clip:

1. both word lists are normalised (lower case, punctuation removed: ``"Movie,"``
   and ``"movie"`` are the same word);
2. a word-level edit distance aligns the two sequences (insert and delete cost 1,
   substitution ``1 - similarity`` of the two words' characters), so a word the
   recogniser missed, a word it added and a misspelt word each cost one edit and
   leave the rest of the alignment intact;
3. label words paired with a recognised word that is equal, or at least
   :data:`FUZZY_MATCH` similar (a misspelling), are *matched* and take its times;
4. every other label word (missed or misheard) gets a span interpolated between
   its matched neighbours, the gap shared in proportion to the words' character
   lengths. Words before the first (after the last) match fill the gap from the
   start (to the end) of the recognised speech; when that gap is empty they get
   :data:`SECONDS_PER_CHAR` per character, clamped inside the clip;
5. with no recognised words at all, the words are spread evenly (by character
   length) over the whole clip ``[0, duration]``.

Times are clamped to ``[0, duration]``, starts and ends never decrease and a word
never overlaps the next. The fraction of (non-punctuation) label words that were
matched measures how well the transcript fits the audio;
:data:`MIN_WORD_MATCH` is the default below which a dataset row is reported as
failed rather than built from guessed timings.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Sequence

from .features import Word

#: default lowest fraction of a transcript's words that must match the recognised speech
#: (``msa dataset create --min-word-match``); below it the row is reported, not built
MIN_WORD_MATCH = 0.5
#: character similarity (difflib ratio) from which two differing words count as the same word
#: misspelt or misrecognised in one letter or two (``moive``/``movie`` = 0.8)
FUZZY_MATCH = 0.7
#: speaking-rate estimate (seconds per character) for words outside the recognised speech
SECONDS_PER_CHAR = 0.07


def normalize_word(text: str) -> str:
    """Lower case with everything but letters and digits removed (``"Movie,"`` -> ``"movie"``)."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def word_similarity(a: str, b: str) -> float:
    """1.0 for equal normalised words, else their difflib character ratio (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return 1.0 if a == b else SequenceMatcher(None, a, b, autojunk=False).ratio()


def _edit_pairs(label: Sequence[str], asr: Sequence[str]) -> list[tuple[int, int]]:
    """(label index, asr index) pairs of a minimum-cost word alignment (substitutions and matches).

    Cost: 1 per inserted or deleted word, ``1 - similarity`` per substituted word. Ties prefer
    the diagonal, so equal-cost alignments pair words rather than skip them.
    """
    n, m = len(label), len(asr)
    sim = [[word_similarity(a, b) for b in asr] for a in label]
    cost = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = float(i)
    for j in range(1, m + 1):
        cost[0][j] = float(j)
    for i in range(1, n + 1):
        row, prev, s = cost[i], cost[i - 1], sim[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j - 1] + 1.0 - s[j - 1], prev[j] + 1.0, row[j - 1] + 1.0)
    pairs: list[tuple[int, int]] = []
    i, j = n, m
    while i > 0 and j > 0:
        if cost[i][j] == cost[i - 1][j - 1] + 1.0 - sim[i - 1][j - 1]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif cost[i][j] == cost[i - 1][j] + 1.0:
            i -= 1
        else:
            j -= 1
    return pairs[::-1]


def _spread(weights: Sequence[int], lo: float, hi: float) -> list[tuple[float, float]]:
    """Split ``[lo, hi]`` into consecutive spans proportional to ``weights``."""
    total = float(sum(weights))
    spans, t = [], lo
    for w in weights:
        end = t + (hi - lo) * w / total
        spans.append((t, end))
        t = end
    return spans


def _fill_gaps(spans: list[tuple[float, float] | None], weights: Sequence[int], speech: tuple[float, float],
               duration: float) -> list[tuple[float, float]]:
    """Interpolate the ``None`` spans between their timed neighbours (see the module docstring, step 4)."""
    out = list(spans)
    i, n = 0, len(out)
    while i < n:
        if out[i] is not None:
            i += 1
            continue
        j = i
        while j < n and out[j] is None:
            j += 1
        w = weights[i:j]
        need = SECONDS_PER_CHAR * sum(w)
        if i == 0 and j == n:  # nothing matched: the whole speech span
            lo, hi = speech
        elif i == 0:  # before the first match
            hi = out[j][0]
            lo = speech[0] if speech[0] < hi else max(0.0, hi - need)
        elif j == n:  # after the last match
            lo = out[i - 1][1]
            hi = speech[1] if speech[1] > lo else min(duration, lo + need)
        else:
            lo, hi = out[i - 1][1], out[j][0]
        out[i:j] = _spread(w, lo, max(lo, hi))
        i = j
    return out  # type: ignore[return-value]


def _monotone(spans: Sequence[tuple[float, float]], duration: float) -> list[tuple[float, float]]:
    """Clamp into ``[0, duration]``; starts never decrease and each word ends by the next one's start."""
    starts, t = [], 0.0
    for s, _ in spans:
        t = min(max(t, s), duration)
        starts.append(t)
    out = []
    for k, (s, e) in enumerate(spans):
        nxt = starts[k + 1] if k + 1 < len(spans) else duration
        out.append((starts[k], min(max(e, starts[k]), max(nxt, starts[k]))))
    return out


def align_transcript(label_words: Sequence[str | Word], asr_words: Sequence[Word],
                     duration: float | None) -> tuple[list[Word], float]:
    """Timed copies of ``label_words`` from the recognised ``asr_words`` of the same clip.

    Returns the label words (their text unchanged, probability 1.0) with start/end times, and
    the fraction of label words matched to a recognised word (1.0 for an empty transcript).
    ``duration`` bounds every time (None: the last recognised word's end). See the module
    docstring for the algorithm.
    """
    texts = [w.text if isinstance(w, Word) else str(w) for w in label_words]
    asr = [w for w in asr_words if w.start == w.start and w.end == w.end]  # drop untimed words
    if duration is None or duration != duration:
        duration = max((w.end for w in asr), default=0.0)
    duration = max(0.0, float(duration))
    if not texts:
        return [], 1.0
    lab_n = [normalize_word(t) for t in texts]
    asr_n = [normalize_word(w.text) for w in asr]
    spans: list[tuple[float, float] | None] = [None] * len(texts)
    matched = 0
    real = [i for i, t in enumerate(lab_n) if t]  # punctuation-only tokens are timed, never aligned
    for k, j in _edit_pairs([lab_n[i] for i in real], asr_n):
        if word_similarity(lab_n[real[k]], asr_n[j]) >= FUZZY_MATCH:
            spans[real[k]] = (asr[j].start, asr[j].end)
            matched += 1
    speech = (min(w.start for w in asr), max(w.end for w in asr)) if asr else (0.0, duration)
    speech = (min(max(speech[0], 0.0), duration), min(max(speech[1], 0.0), duration))
    weights = [max(1, len(t)) for t in lab_n]
    timed = _monotone(_fill_gaps(spans, weights, speech, duration), duration)
    words = [Word(t, float(s), float(e), 1.0) for t, (s, e) in zip(texts, timed)]
    return words, (matched / len(real) if real else 1.0)


__all__ = ["align_transcript", "normalize_word", "word_similarity", "MIN_WORD_MATCH", "FUZZY_MATCH",
           "SECONDS_PER_CHAR"]
