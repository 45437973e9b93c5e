"""One id rule across `msa extract` (vidA__1), `msa dataset create` (vidA_1) and MMSA pickles (vidA$_$1)."""

from __future__ import annotations

import pickle
import shutil

import numpy as np

from msa_toolkit.data.build import MediaIndex
from msa_toolkit.data.labels import LabelRow
from msa_toolkit.data.mmsa import export_mmsa, import_mmsa
from msa_toolkit.data.native import Sample, write_dataset
from msa_toolkit.extraction import collect_files
from msa_toolkit.ids import (extract_name, from_mmsa_id, sample_id, sample_id_of_name, split_sample_id,
                             to_mmsa_id)
from msa_toolkit.spec import ExtractorSpec, FeatureSpec

#: (video, clip, sample id): clip ids may hold "_" when both columns are known
IDS = [("vidA", "1", "vidA_1"), ("03bSnISJMiM", "12", "03bSnISJMiM_12"), ("-3g5yACwYnA", "82_7645",
                                                                           "-3g5yACwYnA_82_7645"),
       ("solo", "", "solo")]


def test_the_three_forms_of_one_clip(tmp_path):
    from pathlib import PurePath

    assert extract_name(PurePath("vidA/1.mp4")) == "vidA__1"
    assert sample_id_of_name("vidA__1") == "vidA_1" and sample_id_of_name("root__vidA__1") == "vidA_1"
    assert sample_id_of_name("clip") == "clip"
    for video, clip, sid in IDS:
        assert sample_id(video, clip) == sid
        mm = to_mmsa_id(sid, video, clip)
        assert mm == (f"{video}$_${clip}" if clip else sid)
        assert from_mmsa_id(mm)[:2] == (sid, video)
    assert split_sample_id("03bSnISJMiM_12") == ("03bSnISJMiM", "12") and split_sample_id("solo") == ("solo", "")
    # the extract name of a file in a folder, and a dataset build finding such a file by its label row
    (tmp_path / "vidA").mkdir()
    shutil.copy(__import__("pathlib").Path(__file__).parent / "assets" / "speech.wav", tmp_path / "vidA" / "1.wav")
    assert [n for _, n in collect_files([tmp_path])[0]] == ["vidA__1"]
    flat = tmp_path / "flat"
    flat.mkdir()
    (tmp_path / "vidA" / "1.wav").rename(flat / "vidA__1.wav")
    row = LabelRow(id="vidA_1", video_id="vidA", clip_id="1", label=0.0, split="train", text=None, line=2)
    assert MediaIndex(flat).find(row) == flat / "vidA__1.wav"


def test_native_mmsa_native_round_trips_ids_exactly(tmp_path):
    spec = FeatureSpec((ExtractorSpec("t", "text", "1", dim=4),), origin={"source": "test"})
    r = np.random.default_rng(0)
    samples = [Sample(id=sid, label=float(i), features={"text": r.standard_normal((3, 4)).astype(np.float32)},
                      video_id=video, clip_id=clip or None, text=f"t{i}")
               for i, (video, clip, sid) in enumerate(IDS)]
    other = Sample(id="vidB_2", label=0.0, features={"text": np.ones((2, 4), np.float32)}, video_id="vidB",
                   clip_id="2")
    ds = write_dataset(tmp_path / "ds", spec, {"train": samples, "test": [other]})
    export_mmsa(ds, tmp_path / "x.pkl")
    with open(tmp_path / "x.pkl", "rb") as fh:
        d = pickle.load(fh)
    assert list(d["train"]["id"]) == ["vidA$_$1", "03bSnISJMiM$_$12", "-3g5yACwYnA$_$82_7645", "solo"]
    back, _ = import_mmsa(tmp_path / "x.pkl", tmp_path / "ds2")
    got = list(back.split("train"))
    assert [s.id for s in got] == [sid for _, _, sid in IDS]
    assert [(s.video_id, s.clip_id or "") for s in got] == [(v, c) for v, c, _ in IDS]
    # and MMSA -> native -> MMSA keeps the pickle's own ids
    export_mmsa(back, tmp_path / "y.pkl")
    with open(tmp_path / "y.pkl", "rb") as fh:
        assert list(pickle.load(fh)["train"]["id"]) == list(d["train"]["id"])
