"""Text-only datasets from a few rows of each shared label file (real text encoder)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msa_toolkit.data.build import build_dataset
from msa_toolkit.data.module import DataModule
from msa_toolkit.errors import DatasetError, RowsLostError


def _head(src, dst, n, every=1):
    lines = src.read_text().splitlines()
    dst.write_text("\n".join([lines[0]] + lines[1::every][:n]) + "\n")
    return dst


@pytest.fixture()
def cache(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.getbasetemp() / "msa_text_cache"
    monkeypatch.setenv("MSA_CACHE_DIR", str(d))
    return d


def test_text_only_mosi_rows(shared_data, tmp_path, cache):
    # every 70th row spans the train, dev and test folds of MOSI
    labels = _head(shared_data / "mosi" / "label.csv", tmp_path / "mosi.csv", 32, every=70)
    rep = build_dataset(labels, out_dir=tmp_path / "ds", progress=False)
    ds = rep.dataset
    assert set(rep.sizes) == {"train", "valid", "test"} and sum(rep.sizes.values()) == 32
    assert ds.spec.modalities == ("text",) and ds.spec.dims["text"] == 384
    assert ds.provenance["transcripts"] == "label" and ds.provenance["source"] == "label_file"
    s = ds.split("dev")[0]
    assert s.text and s.arrays["text.input_ids"].shape[0] == s.features["text"].shape[0]
    dm = DataModule(ds, batch_size=8)
    b = next(iter(dm.loader("train")))
    assert b.audio.shape == (8, 1, 1) and not b.audio_mask.any() and not b.vision_mask.any()
    assert b.text_tokens is not None and b.text_tokens.shape == b.text_mask.shape
    assert np.isfinite(b.text.numpy()).all()
    assert rep.errors_path is None


def test_text_only_mosei_rows_and_empty_text(shared_data, tmp_path, cache):
    labels = _head(shared_data / "mosei" / "label.csv", tmp_path / "mosei.csv", 12, every=1900)
    lines = labels.read_text().splitlines()
    cols = lines[1].split(",")
    lines.append(f"extra_video,1_0,,0.5,{cols[-1]}")  # a row without text
    labels.write_text("\n".join(lines) + "\n")
    # the API refuses to lose rows by default, as `msa dataset create` does
    with pytest.raises(RowsLostError, match="allow_missing=True"):
        build_dataset(labels, out_dir=tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds" / "manifest.json").exists()
    rep = build_dataset(labels, out_dir=tmp_path / "ds", progress=False, allow_missing=True)
    assert sum(rep.sizes.values()) == 12
    assert [f.id for f in rep.failures] == ["extra_video_1_0"]
    errs = json.loads((tmp_path / "ds" / "errors.json").read_text())
    assert errs[0]["id"] == "extra_video_1_0" and "empty text" in errs[0]["message"]
    assert rep.dataset.split("train")[0].video_id == lines[1].split(",")[0]


def test_text_only_needs_text_column(tmp_path, cache):
    p = tmp_path / "l.csv"
    p.write_text("id,label,mode\na_1,1,train\n")
    with pytest.raises(DatasetError, match="no text column"):
        build_dataset(p, out_dir=tmp_path / "ds", progress=False)
