"""One rule of presence (issue 31): a silent clip has no text and a faceless one no vision, in extract's
table and manifest, under ``--require``, in ``msa predict`` and in dataset samples alike."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from msa_toolkit.cli.main import main
from msa_toolkit.data.native import Sample
from msa_toolkit.extraction import ExtractConfig, extract
from msa_toolkit.features import FeatureBundle, FeatureSequence, Transcript
from msa_toolkit.spec import FeatureSpec

#: Whisper + the text encoder only: what a silent clip's text part needs
SPEECH_ONLY = ExtractConfig(audio=None, vision=None)
#: the face extractor only
FACE_ONLY = ExtractConfig(asr=None, text=None, audio=None)


def _has_vision() -> bool:
    from msa_toolkit.extractors.base import list_extractors

    return "mediapipe_face" in list_extractors("vision")


def _seq(n: int, valid: bool = True) -> FeatureSequence:
    return FeatureSequence(np.ones((n, 2)), np.arange(n), np.full(n, valid))


def test_the_rule_text_needs_speech_vision_a_face():
    from msa_toolkit.features import unusable_modalities

    seqs = {"text": _seq(2), "audio": _seq(3), "vision": _seq(4, valid=False)}
    assert unusable_modalities(seqs, has_speech=False) == {"text": "no speech found", "vision": "no face found"}
    assert unusable_modalities({"audio": _seq(0)}, has_speech=True) == {"audio": "no frames"}
    bundle = FeatureBundle(FeatureSpec(), seqs, Transcript(), meta={})
    assert bundle.present_modalities() == ("audio",)
    # dataset samples read the same rule: a faceless clip's vision is absent, as in msa predict
    sample = Sample.from_bundle("x", bundle, 0.0)
    assert set(sample.features) == {"audio"}


def test_silent_clip_has_no_text_in_manifest_and_require_text_fails_it(assets_dir, tmp_path, capfd):
    res = extract(assets_dir / "silence.mp4", out_dir=tmp_path / "out", config=SPEECH_ONLY,
                  cache_dir=tmp_path / "c", progress=False)
    item = res.items[0]
    assert item.modalities == () and item.absent == {"text": "no speech found"}
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["files"][0]
    assert entry["modalities"] == [] and entry["absent"] == {"text": "no speech found"}
    # the summary table says so
    assert main(["extract", str(assets_dir / "silence.mp4"), "-o", str(tmp_path / "o2"), "--audio", "none",
                 "--vision", "none", "--cache-dir", str(tmp_path / "c"), "-q"]) == 0
    out = " ".join(capfd.readouterr().out.split())
    assert "no text: no speech found" in out and "text+" not in out
    # --require text: a recorded per-file failure (served from the cache made without it)
    rc = main(["extract", str(assets_dir / "silence.mp4"), "-o", str(tmp_path / "req"), "--audio", "none",
               "--vision", "none", "--cache-dir", str(tmp_path / "c"), "-q", "--require", "text"])
    capfd.readouterr()
    assert rc == 1
    m = json.loads((tmp_path / "req" / "manifest.json").read_text())
    assert m["files"] == [] and [(f["stage"], f["message"]) for f in m["failures"]] == \
        [("text", "no speech found (text is required)")]


@pytest.mark.skipif(not _has_vision(), reason="mediapipe_face not installed")
def test_faceless_clip_has_no_vision_and_require_vision_fails_it(assets_dir, tmp_path):
    res = extract(assets_dir / "noface.mp4", out_dir=tmp_path / "out", config=FACE_ONLY,
                  cache_dir=tmp_path / "c", progress=False)
    item = res.items[0]
    assert item.modalities == () and item.absent == {"vision": "no face found"}
    bundle = item.load()
    assert bundle.meta["face_ratio"] == 0 and bundle.present_modalities() == ()
    req = extract(assets_dir / "noface.mp4", config=ExtractConfig(asr=None, text=None, audio=None,
                                                                   require=("vision",)),
                  cache_dir=tmp_path / "c", progress=False)
    assert not req.items and [(f.stage, f.message) for f in req.failures] == \
        [("vision", "no face found (vision is required)")]
