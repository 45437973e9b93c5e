"""Golden values for FeatureSpec.fingerprint(): the cache key of every bundle.

A change to the canonical JSON (key order, separators, float handling) silently
invalidates every cache and every dataset's recorded spec, so the exact string
and its sha256 are pinned here.
"""

import dataclasses
import hashlib

import pytest

from msa_toolkit.spec import ExtractorSpec, FeatureSpec

AUDIO = ExtractorSpec(
    "opensmile", "audio", "1", {"feature_set": "eGeMAPSv02"}, 2, 100.0,
    ("Loudness_sma3", "F0semitoneFrom27.5Hz_sma3nz"),
)
TEXT = ExtractorSpec("minilm", "text", "1", {"model": "a"}, 384, None)

GOLDEN_JSON = (
    '{"alignment":"none","extractors":['
    '{"dim":2,"feature_names":["Loudness_sma3","F0semitoneFrom27.5Hz_sma3nz"],"frame_rate":100.0,'
    '"modality":"audio","name":"opensmile","params":{"feature_set":"eGeMAPSv02"},"version":"1"},'
    '{"dim":384,"feature_names":[],"frame_rate":null,"modality":"text","name":"minilm",'
    '"params":{"model":"a"},"version":"1"}],"origin":{},"schema_version":1}'
)
GOLDEN_FINGERPRINT = "fb60f73bd4300a7388ec37aaed5bd7314d8700323cfb833d2c3d88678e9eb551"


def test_golden_json_and_fingerprint():
    spec = FeatureSpec((TEXT, AUDIO))  # extractor order does not matter: sorted by modality
    assert spec.to_json() == GOLDEN_JSON
    assert hashlib.sha256(GOLDEN_JSON.encode()).hexdigest() == GOLDEN_FINGERPRINT
    assert spec.fingerprint() == GOLDEN_FINGERPRINT
    assert FeatureSpec((AUDIO, TEXT)).fingerprint() == GOLDEN_FINGERPRINT


@pytest.mark.parametrize("change", [
    {"version": "2"},
    {"dim": 3, "feature_names": ("Loudness_sma3", "F0semitoneFrom27.5Hz_sma3nz", "jitterLocal_sma3nz")},
    {"feature_names": ("Loudness_sma3", "F0semitone")},
    {"feature_names": ("F0semitoneFrom27.5Hz_sma3nz", "Loudness_sma3")},  # same names, other order
    {"params": {"feature_set": "ComParE_2016"}},
    {"frame_rate": 50.0},
])
def test_each_output_changing_field_changes_the_fingerprint(change):
    # compared with the same code's unchanged spec, not only with the golden value
    changed = FeatureSpec((TEXT, dataclasses.replace(AUDIO, **change)))
    assert changed.fingerprint() != FeatureSpec((TEXT, AUDIO)).fingerprint()


def test_dim_alone_changes_the_fingerprint():
    # dim is recorded on its own, not only through the number of column names
    changed = FeatureSpec((dataclasses.replace(TEXT, dim=768), AUDIO))
    assert changed.fingerprint() != FeatureSpec((TEXT, AUDIO)).fingerprint()
