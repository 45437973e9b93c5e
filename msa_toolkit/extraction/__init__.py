"""The extraction pipeline: media files (or plain texts) -> cached FeatureBundles.

Per file: probe and decode once (the 16 kHz waveform is shared by ASR and the
acoustic extractor; frames are streamed once to the visual extractor), run the
configured extractors, optionally align to words, and store the bundle in the
content-addressed cache (:mod:`msa_toolkit.cache`). ``out_dir`` receives a copy
of every bundle (``<name>.safetensors`` + ``<name>.json``), a ``manifest.json``
and, when something failed, ``errors.json`` / ``errors.csv``.

One bad file never stops a run: its failure is recorded with the stage it
failed in. Only a configuration problem that affects every file (an unknown
extractor, a model that cannot be loaded) raises.

    from msa_toolkit.extraction import ExtractConfig, extract
    res = extract(["clips/"], out_dir="features", config=ExtractConfig(vision=None))
    for item in res.items: print(item.name, item.bundle_path)
    for f in res.failures: print(f.path, f.stage, f.message)

Modules: ``config`` (ExtractConfig), ``inputs`` (files, shards, user transcripts),
``runner`` (LoadedExtractors: every stage on one file), ``run`` (extract(): cache
look-up, worker pool), ``outputs`` (out_dir copies, manifest, failure reports),
``results`` (FileResult, Failure, ExtractResult), ``texts`` (extract_texts), ``safety`` (output checks
before work, fallback writes, worker parent watch, SIGTERM as Ctrl-C), ``completeness`` (decoded
against declared duration: a truncated file is flagged, ``require=("complete",)`` fails it).

A stage whose input stream a file lacks is *absent*, not failed: an audio-only file gets
transcript, text and audio with ``vision`` absent; a video without an audio track gets vision
with ``asr``/``text``/``audio`` absent (bundle meta ``modalities`` / ``absent``, the manifest, the
FileResult). ``ExtractConfig(require=("vision",))`` turns an absence into a failure; a file with
every enabled stage absent fails. Files in a folder that are not media are listed as skipped
(``ExtractResult.skipped``, stage ``"skipped"``); inputs with no media at all raise MediaError.

The public names below are imported lazily (on first access), so importing one light
submodule (``msa_toolkit.extraction.config``, which the CLI's ``--help`` reads) does not
import numpy or the rest of the pipeline.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> module that defines it (relative to this package, or absolute for shared ones)
_LAZY = {
    "ExtractConfig": ".config",
    "ExtractConfigError": "msa_toolkit.errors",
    "collect_files": ".inputs",
    "collect_inputs": ".inputs",
    "find_user_transcript": ".inputs",
    "parse_shard": ".inputs",
    "select_shard": ".inputs",
    "ERRORS_CSV": ".outputs",
    "ERRORS_JSON": ".outputs",
    "MANIFEST_NAME": ".outputs",
    "STAGES": ".results",
    "ExtractResult": ".results",
    "Failure": ".results",
    "FileResult": ".results",
    "extract": ".run",
    "ExtractionInterrupted": ".run",
    "SKIPPED": ".results",
    "LoadedExtractors": ".runner",
    "extract_file": ".runner",
    "load_extractors": ".runner",
    "TEXT_CHUNK": ".texts",
    "extract_texts": ".texts",
    "align_bundle": "msa_toolkit.align",
    "SAMPLE_RATE": "msa_toolkit._io",
    "TRANSCRIPT_EXTENSIONS": "msa_toolkit._io",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
