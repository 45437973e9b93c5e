"""Native dataset format: streaming write, memory-mapped read, manifest, stats, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msa_toolkit.data.native import Sample, load_dataset, read_safetensors_mmap, write_dataset
from msa_toolkit.errors import DatasetError
from msa_toolkit.features import FeatureBundle, FeatureSequence, Transcript
from msa_toolkit.spec import ExtractorSpec, FeatureSpec

SPEC = FeatureSpec(
    extractors=(ExtractorSpec("t", "text", "1", dim=4), ExtractorSpec("a", "audio", "1", dim=3)),
    origin={"source": "test"},
)


def _samples(n, seed, prefix, missing_audio=()):
    r = np.random.default_rng(seed)
    out = []
    for i in range(n):
        feats = {"text": r.standard_normal((int(r.integers(1, 6)), 4)).astype(np.float32)}
        masks = {}
        if i not in missing_audio:
            la = int(r.integers(2, 8))
            feats["audio"] = (r.standard_normal((la, 3)) * 2 + 5).astype(np.float32)
            masks["audio"] = np.arange(la) != 1  # second frame invalid
        out.append(Sample(id=f"{prefix}{i}", label=float(i) - 2, features=feats, masks=masks,
                          arrays={"text.input_ids": np.arange(feats["text"].shape[0], dtype=np.int64) + 100},
                          text=f"words {i}", video_id=prefix, label_T=0.5 if i == 0 else None))
    return out


def test_write_and_read_back_exactly(tmp_path):
    tr, dv = _samples(7, 0, "tr", missing_audio=(3,)), _samples(3, 1, "dv")
    ds = write_dataset(tmp_path / "ds", SPEC, {"train": iter(tr), "dev": dv}, provenance={"source": "unit"})
    assert ds.splits == ("train", "valid")
    assert ds.num_samples() == {"train": 7, "valid": 3}
    assert ds.split("dev") is ds.split("valid")  # alias
    for orig, got in zip(tr, ds.split("train")):
        assert got.id == orig.id and got.label == orig.label and got.text == orig.text
        np.testing.assert_array_equal(got.features["text"], orig.features["text"])
        np.testing.assert_array_equal(got.arrays["text.input_ids"], orig.arrays["text.input_ids"])
        if "audio" in orig.features:
            np.testing.assert_array_equal(got.features["audio"], orig.features["audio"])
            np.testing.assert_array_equal(got.masks["audio"], orig.masks["audio"])
        else:
            assert "audio" not in got.features
    assert ds.split("train")[0].label_T == 0.5 and ds.split("train")[1].label_T is None
    assert list(ds.split("train").lengths("audio"))[3] == 0
    m = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert m["format_version"] == 1 and m["provenance"]["source"] == "unit"
    assert "created" in m["provenance"] and "toolkit_version" in m["provenance"]
    assert not FeatureSpec.from_dict(m["spec"]).diff(SPEC) and ds.spec.fingerprint() == SPEC.fingerprint()
    # the split file is plain safetensors
    from safetensors import safe_open
    with safe_open(str(tmp_path / "ds" / "train.safetensors"), "np") as f:
        assert f.get_tensor("text.offsets").shape == (8,)
        assert f.get_tensor("audio.values").shape[1] == 3


def test_stats_from_train_valid_steps_only(tmp_path):
    tr = _samples(20, 2, "tr")
    ds = write_dataset(tmp_path / "ds", SPEC, {"train": tr, "test": _samples(5, 3, "te")})
    rows = np.concatenate([s.features["audio"][s.masks["audio"]] for s in tr])
    mean, std = ds.stats["audio"]
    np.testing.assert_allclose(mean, rows.mean(0), rtol=1e-5)
    np.testing.assert_allclose(std, rows.std(0), rtol=1e-4)
    assert ds.manifest["stats"]["split"] == "train"


def test_memmap_reader_is_lazy(tmp_path):
    write_dataset(tmp_path / "ds", SPEC, {"train": _samples(4, 0, "x")})
    t = read_safetensors_mmap(tmp_path / "ds" / "train.safetensors")
    assert isinstance(t["text.values"], np.memmap)


def test_pickled_split_reopens(tmp_path):
    import pickle
    ds = write_dataset(tmp_path / "ds", SPEC, {"train": _samples(4, 0, "x")})
    sp = ds.split("train")
    _ = sp[0]
    sp2 = pickle.loads(pickle.dumps(sp))
    np.testing.assert_array_equal(sp2[2].features["text"], sp[2].features["text"])


def test_duplicate_ids_across_splits(tmp_path):
    with pytest.raises(DatasetError, match="duplicate sample id 'x0' \\(in splits 'train' and 'test'\\)"):
        write_dataset(tmp_path / "ds", SPEC, {"train": _samples(3, 0, "x"), "test": _samples(2, 0, "x")})
    with pytest.raises(DatasetError, match="duplicate sample id 'x1' \\(twice in split 'train'\\)"):
        write_dataset(tmp_path / "ds", SPEC, {"train": _samples(2, 0, "x") + _samples(2, 1, "x")[1:]})
    assert not (tmp_path / "ds" / "manifest.json").exists()


@pytest.mark.parametrize("first", [True, False], ids=["textless_first", "textless_later"])
def test_a_sample_without_a_modality_needs_none_of_its_arrays(tmp_path, first):
    """A video without sound (no text) in a split of clips with speech: its text arrays are empty ranges."""
    r = np.random.default_rng(0)

    def talking(i):
        return Sample(f"t{i}", 1.0, features={"text": r.standard_normal((3, 4)).astype(np.float32)},
                      arrays={"text.input_ids": np.arange(3, dtype=np.int64) + i})

    silent = Sample("silent", -1.0, features={"audio": r.standard_normal((5, 3)).astype(np.float32)})
    rows = [silent, talking(0), talking(1)] if first else [talking(0), silent, talking(1)]
    ds = write_dataset(tmp_path / "ds", SPEC, {"train": rows})
    got = {s.id: s for s in ds.split("train")}
    assert got["silent"].arrays["text.input_ids"].shape == (0,) and "text" not in got["silent"].features
    for i in (0, 1):
        np.testing.assert_array_equal(got[f"t{i}"].arrays["text.input_ids"], np.arange(3) + i)
    # a sample that has text but lacks its arrays is still refused
    bad = Sample("bad", 0.0, features={"text": np.zeros((2, 4), np.float32)})
    with pytest.raises(DatasetError, match="'bad' lacks array 'text.input_ids'"):
        write_dataset(tmp_path / "ds2", SPEC, {"train": [talking(0), bad]})
    with pytest.raises(DatasetError, match="'t0' has array 'text.input_ids' that earlier samples"):
        write_dataset(tmp_path / "ds3", SPEC, {"train": [bad, talking(0)]})


def test_dim_mismatch_names_sample(tmp_path):
    bad = Sample("bad", 0.0, features={"text": np.zeros((2, 5), np.float32)})
    with pytest.raises(DatasetError, match=r"'bad'.*\[T, 4\]"):
        write_dataset(tmp_path / "ds", SPEC, {"train": [bad]})


def test_existing_dataset_needs_overwrite(tmp_path):
    write_dataset(tmp_path / "ds", SPEC, {"train": _samples(2, 0, "x")})
    with pytest.raises(DatasetError, match="already holds a dataset"):
        write_dataset(tmp_path / "ds", SPEC, {"train": _samples(2, 0, "x")})
    ds = write_dataset(tmp_path / "ds", SPEC, {"train": _samples(3, 0, "x")}, overwrite=True)
    assert len(ds.split("train")) == 3


def test_load_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="manifest.json is missing"):
        load_dataset(tmp_path / "empty")
    ds = write_dataset(tmp_path / "ds", SPEC, {"train": _samples(2, 0, "x")})
    with pytest.raises(DatasetError, match="no split 'test'"):
        ds.split("test")


def test_sample_from_bundle():
    b = FeatureBundle(
        spec=SPEC,
        sequences={"text": FeatureSequence(np.ones((3, 4)), np.zeros(3), np.ones(3, bool))},
        transcript=Transcript.from_text("hello there"),
        arrays={"text.input_ids": np.array([1, 2, 3]), "text.attention_mask": np.array([1, 1, 1])},
    )
    s = Sample.from_bundle("c1", b, 1.5)
    assert s.text == "hello there" and s.features["text"].shape == (3, 4) and s.label == 1.5
    assert set(s.arrays) == {"text.input_ids", "text.attention_mask"}


def test_sample_from_a_bundle_without_speech_has_no_text_as_predict_reads_it():
    """A silent clip's text features ([CLS][SEP] of an empty transcript) are absent in a dataset, as in
    ``msa predict`` (train/predict skew before: the dataset kept them, predict dropped them)."""
    from msa_toolkit.prediction import Predictor

    seqs = {"text": FeatureSequence(np.ones((2, 4)), np.zeros(2), np.ones(2, bool)),
            "audio": FeatureSequence(np.ones((5, 3)), np.zeros(5), np.ones(5, bool))}
    arrays = {"text.input_ids": np.array([101, 102]), "text.attention_mask": np.array([1, 1])}
    silent = FeatureBundle(spec=SPEC, sequences=seqs, transcript=Transcript(words=()), arrays=arrays)
    s = Sample.from_bundle("silent", silent, 0.5)
    assert "text" not in s.features and "text" not in s.masks and s.arrays == {}
    assert s.features["audio"].shape == (5, 3) and s.text == ""
    # the same rule in predict: one place decides
    assert set(silent.model_sequences()) == {"audio"} and not silent.has_speech
    pred = object.__new__(Predictor)
    pred.modalities = ("text", "audio")
    used, flags = Predictor.usable_sequences(pred, silent)
    assert set(used) == set(s.features) and "no speech found: text modality absent" in flags
    # with words, text stays
    spoken = FeatureBundle(spec=SPEC, sequences=seqs, transcript=Transcript.from_text("fine"), arrays=arrays)
    assert set(Sample.from_bundle("spoken", spoken, 0.5).features) == {"text", "audio"}


def test_write_streams_without_holding_the_split(tmp_path):
    import tracemalloc

    spec = FeatureSpec((ExtractorSpec("a", "audio", "1", dim=64),))

    def gen():
        for i in range(200):  # 200 x 1000 x 64 float32 = 51 MB in all
            yield Sample(f"s{i}", 0.0, features={"audio": np.full((1000, 64), i, np.float32)})

    tracemalloc.start()
    ds = write_dataset(tmp_path / "ds", spec, {"train": gen()})
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MB while writing 51 MB"
    assert ds.split("train")[150].features["audio"][0, 0] == 150
