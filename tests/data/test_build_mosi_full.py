"""Slow: the full MOSI text dataset through the CLI, with the standard split sizes."""

from __future__ import annotations

import time

import numpy as np
import pytest

from msa_toolkit.cli.main import main


@pytest.mark.slow
def test_full_mosi_text_set(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path / "cache"))  # cold cache: every text is encoded
    t0 = time.perf_counter()
    rc = main(["dataset", "create", "--labels", str(shared_data / "mosi" / "label.csv"), "--transcripts", "label",
               "-o", str(tmp_path / "mosi"), "-q"])
    elapsed = time.perf_counter() - t0
    assert rc == 0, capsys.readouterr().err
    from msa_toolkit.data.inspect import validate_dataset
    from msa_toolkit.data.native import load_dataset

    ds = load_dataset(tmp_path / "mosi")
    assert ds.num_samples() == {"train": 1281, "valid": 229, "test": 685}
    assert ds.spec.modalities == ("text",) and ds.spec.dims["text"] == 384
    assert validate_dataset(ds) == []
    s = ds.split("test")[0]
    assert np.isfinite(s.features["text"]).all() and s.text
    print(f"full MOSI text build: {elapsed:.1f} s")
