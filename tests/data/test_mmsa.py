"""MMSA pickle import/export with the reference keys and shapes; round trip; the shared Poria pickle."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from msa_toolkit.data.mmsa import export_mmsa, import_mmsa
from msa_toolkit.data.module import DataModule
from msa_toolkit.errors import DatasetError

SIZES = {"train": 5, "valid": 2, "test": 3}


def _make_pickle(path, L=(50, 50, 50), dims=(768, 5, 20), aligned=True, sims=False, seed=0):
    r = np.random.default_rng(seed)
    data = {}
    for split, n in SIZES.items():
        Lt, La, Lv = L
        tl = r.integers(3, Lt + 1, n)
        ids = np.zeros((n, Lt)); mask = np.zeros((n, Lt)); seg = np.zeros((n, Lt))
        for i, k in enumerate(tl):
            ids[i, :k] = r.integers(100, 30000, k); ids[i, 0] = 101; ids[i, k - 1] = 102
            mask[i, :k] = 1
        text = r.standard_normal((n, Lt, dims[0])).astype(np.float32)
        audio = r.standard_normal((n, La, dims[1])).astype(np.float32)
        vision = r.standard_normal((n, Lv, dims[2])).astype(np.float32)
        d = {"id": np.array([f"vid{split}{i // 2}$_${i % 2}" for i in range(n)]),
             "raw_text": np.array([f"text {split} {i}" for i in range(n)]),
             "text": text, "text_bert": np.stack([ids, mask, seg], 1).astype(np.float64)}
        if aligned:
            audio[mask == 0] = 0
            vision[mask == 0] = 0
        else:
            al, vl = r.integers(1, La + 1, n), r.integers(1, Lv + 1, n)
            for i in range(n):
                audio[i, al[i]:] = 0
                vision[i, vl[i]:] = 0
            d["audio_lengths"], d["vision_lengths"] = al, vl
        audio[0, 0, 0] = -np.inf  # as in the reference files
        d["audio"], d["vision"] = audio, vision
        lab = np.round(r.uniform(-3, 3, n), 1).astype(np.float32)
        lab[0] = 0.0
        d["regression_labels"] = lab
        if sims:
            for m in "TAV":
                d[f"regression_labels_{m}"] = np.round(r.uniform(-1, 1, n), 1).astype(np.float32)
        d["classification_labels"] = (np.sign(lab) + 1).astype(np.float32)
        d["annotations"] = np.array(["Positive" if x > 0 else "Negative" if x < 0 else "Neutral" for x in lab])
        data[split] = d
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=4)
    return data


def _assert_same_dataset(a, b):
    assert a.splits == b.splits and not a.spec.diff(b.spec)
    for s in a.splits:
        for x, y in zip(a.split(s), b.split(s), strict=True):
            assert (x.id, x.text, x.annotation, x.class_label, x.video_id, x.clip_id) == \
                   (y.id, y.text, y.annotation, y.class_label, y.video_id, y.clip_id)
            assert x.label == y.label and (x.label_T, x.label_A, x.label_V) == (y.label_T, y.label_A, y.label_V)
            assert set(x.features) == set(y.features) and set(x.arrays) == set(y.arrays)
            for m in x.features:
                np.testing.assert_array_equal(x.features[m], y.features[m])
                np.testing.assert_array_equal(x.masks[m], y.masks[m])
            for k in x.arrays:
                np.testing.assert_array_equal(x.arrays[k], y.arrays[k])
    for m, (mean, std) in a.stats.items():
        np.testing.assert_allclose(mean, b.stats[m][0]); np.testing.assert_allclose(std, b.stats[m][1])


@pytest.mark.parametrize("name,L,dims,aligned,sims", [
    ("aligned_50.pkl", (50, 50, 50), (768, 5, 20), True, False),
    ("unaligned_50.pkl", (50, 375, 500), (768, 5, 20), False, False),
    ("unaligned_39.pkl", (39, 400, 55), (768, 33, 709), False, True),
])
def test_round_trip_reference_shapes(tmp_path, name, L, dims, aligned, sims):
    orig = _make_pickle(tmp_path / "a" / name, L, dims, aligned, sims)
    ds1, rep = import_mmsa(tmp_path / "a" / name, tmp_path / "ds1")
    assert rep.layout == ("aligned" if aligned else "unaligned")
    assert ds1.num_samples() == SIZES
    assert ds1.spec.dims == dict(zip(("text", "audio", "vision"), dims))
    assert ds1.spec.origin == {"source": "mmsa_pickle", "file": name, "layout": rep.layout}
    assert all(e.version == "unknown" for e in ds1.spec.extractors)
    assert any("-inf" in w for w in rep.warnings)
    s = ds1.split("train")[0]
    assert s.features["audio"][0, 0] == 0  # -inf replaced
    assert s.video_id == "vidtrain0" and s.clip_id == "0"
    n_tok = int(orig["train"]["text_bert"][0, 1].sum())
    assert s.masks["text"].sum() == n_tok
    if aligned:
        assert s.masks["audio"].sum() == n_tok and s.features["audio"].shape[0] == 50
    else:
        assert s.features["vision"].shape[0] == orig["train"]["vision_lengths"][0]
    if sims:
        assert s.label_T == pytest.approx(float(orig["train"]["regression_labels_T"][0]))

    erep = export_mmsa(ds1, tmp_path / "b" / name)
    with open(tmp_path / "b" / name, "rb") as fh:
        out = pickle.load(fh)
    assert set(out) == set(orig)
    for split in orig:
        assert set(out[split]) == set(orig[split]), split
        for k, v in orig[split].items():
            assert out[split][k].shape == v.shape, (split, k)
            if k == "audio":
                v = np.where(np.isfinite(v), v, 0)
            if v.dtype.kind in "fi":
                np.testing.assert_array_equal(out[split][k], v.astype(out[split][k].dtype), err_msg=k)
            else:
                assert list(out[split][k]) == list(v), k
    assert not erep.warnings
    ds2, _ = import_mmsa(tmp_path / "b" / name, tmp_path / "ds2")
    _assert_same_dataset(ds1, ds2)
    dm = DataModule(ds2, batch_size=4)
    b = next(iter(dm.loader("train")))
    assert b.text.shape == (4, L[0], 768) and b.text_tokens.shape == (4, L[0])
    assert b.text_tokens[0, 0] == 101


def test_export_native_text_only_warns(tmp_path):
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    ds = make_synthetic_dataset(tmp_path / "syn", n_train=4, n_valid=2, n_test=2, modalities=("text",))
    rep = export_mmsa(ds, tmp_path / "x.pkl")
    assert any("absent" in w for w in rep.warnings) and any("text_bert" in w for w in rep.warnings)
    with open(tmp_path / "x.pkl", "rb") as fh:
        d = pickle.load(fh)
    assert d["train"]["audio"].shape == (4, 1, 1) and d["train"]["text"].shape[1] == rep.lengths["text"]
    assert d["train"]["text_bert"][0, 1].sum() == ds.split("train")[0].features["text"].shape[0]


def test_import_errors(tmp_path):
    p = tmp_path / "bad.pkl"
    p.write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="bad.pkl: cannot read as a pickle"):
        import_mmsa(p, tmp_path / "ds")
    with open(p, "wb") as fh:
        pickle.dump({"foo": {}}, fh)
    with pytest.raises(DatasetError, match="no train/valid/test keys"):
        import_mmsa(p, tmp_path / "ds")
    with open(p, "wb") as fh:
        pickle.dump({"train": {"text": np.zeros((2, 3, 4))}}, fh)
    with pytest.raises(DatasetError, match="no 'regression_labels'"):
        import_mmsa(p, tmp_path / "ds")


def test_import_shared_poria_pickle(shared_data, tmp_path):
    f = shared_data / "mosi_utterance" / "mosi_poria_utterance.pkl"
    if not f.is_file():
        pytest.skip("mosi_poria_utterance.pkl not present")
    ds, rep = import_mmsa(f, tmp_path / "ds")
    assert ds.num_samples() == {"train": 1289, "valid": 158, "test": 752}
    assert ds.spec.dims == {"text": 100, "audio": 73, "vision": 100}
    assert rep.layout == "unaligned"
    s = ds.split("train")[0]
    assert s.features["text"].shape == (1, 100) and s.annotation in ("Negative", "Positive", "Neutral")
    dm = DataModule(ds, batch_size=64)
    b = next(iter(dm.train_loader()))
    assert b.text.shape == (64, 1, 100) and b.audio_mask.all() and b.text_tokens is None
    export_mmsa(ds, tmp_path / "out" / f.name)
    ds2, _ = import_mmsa(tmp_path / "out" / f.name, tmp_path / "ds2")
    _assert_same_dataset(ds, ds2)


# -- issue 15 ------------------------------------------------------------------------------------

def test_import_replaces_nonfinite_in_every_modality_with_counts(tmp_path):
    data = _make_pickle(tmp_path / "a.pkl", (6, 6, 6), (4, 3, 2), aligned=False)
    data["train"]["text"][1, 0, 0] = np.inf
    data["valid"]["vision"][0, 0, :] = np.nan
    with open(tmp_path / "a.pkl", "wb") as fh:
        pickle.dump(data, fh)
    ds, rep = import_mmsa(tmp_path / "a.pkl", tmp_path / "ds")
    assert rep.nonfinite["text"] == 1 and rep.nonfinite["vision"] == 2 and rep.nonfinite["audio"] >= 1
    assert ds.provenance["nonfinite_replaced"] == rep.nonfinite
    assert all(np.isfinite(x.features[m]).all() for x in ds.samples() for m in x.features)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 7.0, -12.0])
def test_import_refuses_bad_labels_naming_split_and_index(tmp_path, bad):
    data = _make_pickle(tmp_path / "a.pkl", (6, 6, 6), (4, 3, 2), aligned=False)
    data["test"]["regression_labels"][2] = bad
    with open(tmp_path / "a.pkl", "wb") as fh:
        pickle.dump(data, fh)
    with pytest.raises(DatasetError, match=r"test/regression_labels: labels must be finite .*\[2\]="):
        import_mmsa(tmp_path / "a.pkl", tmp_path / "ds")


def test_export_pads_to_mmsa_fet_rule_or_given_lengths(tmp_path):
    from msa_toolkit.data.mmsa import mmsa_fet_length
    from msa_toolkit.data.native import Sample, write_dataset
    from msa_toolkit.data.synthetic import synthetic_spec

    r = np.random.default_rng(0)
    lens = [10] * 40 + [12] * 19 + [300]  # one outlier must not set the padded length
    spec = synthetic_spec((4, 3, 2))
    samples = [Sample(f"v{i}_0", 0.5, {m: r.standard_normal((L, d)).astype(np.float32)
                                        for m, d in spec.dims.items()}) for i, L in enumerate(lens)]
    ds = write_dataset(tmp_path / "ds", spec, {"train": samples[:50], "test": samples[50:]})
    rule = int(round(np.mean(lens) + 3 * np.std(lens)))
    assert mmsa_fet_length(np.array(lens)) == rule < 300
    rep = export_mmsa(ds, tmp_path / "o.pkl")
    with open(tmp_path / "o.pkl", "rb") as fh:
        out = pickle.load(fh)
    assert rep.lengths == {"text": rule, "audio": rule, "vision": rule} and out["test"]["text"].shape[1] == rule
    assert rep.truncated == {"text": 1, "audio": 1, "vision": 1}
    assert any(f"text: 1 of 60 sequences truncated to {rule} steps (longest 300)" in w for w in rep.warnings)
    rep = export_mmsa(ds, tmp_path / "o2.pkl", lengths={"text": 8, "audio": 20})
    assert rep.lengths == {"text": 8, "audio": 20, "vision": rule} and rep.truncated["text"] == 60


def test_import_reports_lengths_beyond_the_stored_steps(tmp_path):
    """A stated ``audio_lengths`` above the padded length was clipped silently; now counted and warned."""
    data = _make_pickle(tmp_path / "a.pkl", (6, 8, 8), (4, 3, 2), aligned=False)
    data["train"]["audio_lengths"][:2] = [12, 30]  # the file stores 8 audio steps
    with open(tmp_path / "a.pkl", "wb") as fh:
        pickle.dump(data, fh)
    ds, rep = import_mmsa(tmp_path / "a.pkl", tmp_path / "ds")
    assert rep.overlong == {"audio": 2} and ds.provenance["overlong_lengths"] == {"audio": 2}
    assert any("audio: 2 samples state more valid steps" in w and "30 > 8" in w for w in rep.warnings)
    assert [ds.split("train")[i].features["audio"].shape[0] for i in (0, 1)] == [8, 8]
    _make_pickle(tmp_path / "b.pkl", (6, 8, 8), (4, 3, 2), aligned=False)
    assert import_mmsa(tmp_path / "b.pkl", tmp_path / "ds3")[1].overlong == {}
