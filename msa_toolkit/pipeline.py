"""Compatibility module: the extraction pipeline now lives in :mod:`msa_toolkit.extraction`.

Every public name this module used to define is re-exported, so ``from msa_toolkit.pipeline
import ExtractConfig, extract`` keeps working. New code imports from ``msa_toolkit.extraction``.
"""

from .extraction import (ERRORS_CSV, ERRORS_JSON, MANIFEST_NAME, SAMPLE_RATE, STAGES, TEXT_CHUNK,
                         TRANSCRIPT_EXTENSIONS, ExtractConfig, ExtractConfigError, ExtractResult, Failure,
                         FileResult, LoadedExtractors, align_bundle, collect_files, extract, extract_file,
                         extract_texts, find_user_transcript, load_extractors, parse_shard, select_shard)

#: the old private name of LoadedExtractors
_Runner = LoadedExtractors

__all__ = [
    "ERRORS_CSV", "ERRORS_JSON", "MANIFEST_NAME", "SAMPLE_RATE", "STAGES", "TEXT_CHUNK", "TRANSCRIPT_EXTENSIONS",
    "ExtractConfig", "ExtractConfigError", "ExtractResult", "Failure", "FileResult", "LoadedExtractors",
    "align_bundle", "collect_files", "extract", "extract_file", "extract_texts", "find_user_transcript",
    "load_extractors", "parse_shard", "select_shard",
]
