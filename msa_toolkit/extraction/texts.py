"""extract_texts(): text-only FeatureBundles for given texts (no media), batched and cached."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Mapping

from .. import __version__
from .._io import progress_bar
from ..cache import FeatureCache, cache_key, hash_text
from ..errors import ExtractConfigError
from ..features import FeatureBundle, Transcript
from .config import ExtractConfig
from .runner import LoadedExtractors

#: texts per chunk handed to the text encoder by extract_texts (each chunk is then cached)
TEXT_CHUNK = 256


def _encode_missing(runner: LoadedExtractors, missing: Mapping[str, str], cache: FeatureCache,
                    by_key: dict[str, FeatureBundle], bar, task) -> None:
    """Encode the texts not in the cache (key -> text), chunk by chunk, and cache each bundle."""
    runner.load()
    # similar lengths together: little padding in every encoder batch
    keys = sorted(missing, key=lambda k: len(missing[k]))
    for c in range(0, len(keys), TEXT_CHUNK):
        chunk = keys[c:c + TEXT_CHUNK]
        trs = [Transcript.from_text(missing[key]) for key in chunk]
        bar.update(task, current="encoding")
        for key, tr, (seq, arr) in zip(chunk, trs, runner.encode_texts(trs)):
            seqs = runner.align_words({"text": seq}, arr, tr)
            b = FeatureBundle(runner.spec, seqs, tr, dict(arr),
                              {"text_sha256": hash_text(missing[key]),
                               "n_words": len(tr.words), "toolkit_version": __version__})
            cache.put(key, b)
            by_key[key] = b
            bar.advance(task)


def extract_texts(texts: Mapping[str, str], config: ExtractConfig = ExtractConfig(),
                  cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, FeatureBundle]:
    """Text-only bundles for given texts (no media), keyed like ``texts``.

    Texts are batched through the text encoder and cached by hash of the text + the text
    FeatureSpec, so building a 22k-row label file twice encodes nothing the second time.
    Identical texts are encoded once. The spec holds only the text extractor; with
    ``config.align == "words"`` text is pooled per word (words = whitespace tokens).
    """
    if not config.text:
        raise ExtractConfigError("extract_texts needs a text extractor (config.text)")
    runner = LoadedExtractors(replace(config, asr=None, audio=None, vision=None))
    fingerprint = runner.spec.fingerprint()
    cache = FeatureCache(cache_dir)
    norm = {k: " ".join(str(v).split()) for k, v in texts.items()}
    key_of = {k: cache_key(hash_text(t), fingerprint) for k, t in norm.items()}
    by_key: dict[str, FeatureBundle] = {}
    missing: dict[str, str] = {}  # key -> text
    with progress_bar(progress, current=True) as bar:
        task = bar.add_task("texts", total=len(norm), current="cache")
        for k, key in key_of.items():
            if key in by_key or key in missing:
                continue
            b = cache.get(key)
            if b is not None:
                by_key[key] = b
                bar.advance(task)
            else:
                missing[key] = norm[k]
        if missing:
            _encode_missing(runner, missing, cache, by_key, bar, task)
        bar.update(task, completed=len(norm), current="done")
    return {k: by_key[key] for k, key in key_of.items()}
