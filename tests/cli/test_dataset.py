"""`msa dataset` commands: create (text-only), import/export, info, validate (incl. non-zero exit)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from msa_toolkit.cli.main import main


def _write_labels(tmp_path, rows):
    p = tmp_path / "label.csv"
    p.write_text("id,text,label,mode\n" + "".join(f"{r}\n" for r in rows))
    return p


def test_create_text_only_info_validate(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path / "cache"))
    labels = _write_labels(tmp_path, ["a_1,what a great movie,2.5,train", "a_2,it was awful,-2,train",
                                      "b_1,fine i guess,0.2,dev", "c_1,not bad at all,1,test"])
    rc = main(["dataset", "create", "--labels", str(labels), "--transcripts", "label", "-o", str(tmp_path / "ds"),
               "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and "train 2, valid 1, test 1" in out
    assert main(["dataset", "info", str(tmp_path / "ds"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"]["train"]["samples"] == 2 and info["dims"]["text"] == 384
    hist = info["splits"]["train"]["label_histogram"]
    assert hist["-2"] == 1 and sum(hist.values()) == 2
    assert main(["dataset", "info", str(tmp_path / "ds")]) == 0
    assert "sequence lengths" in capsys.readouterr().out
    assert main(["dataset", "validate", str(tmp_path / "ds")]) == 0
    assert "OK" in capsys.readouterr().out


def test_create_errors_are_one_line(tmp_path, capsys):
    labels = tmp_path / "l.csv"
    labels.write_text("id,text,mode\na_1,hi,train\n")
    rc = main(["dataset", "create", "--labels", str(labels), "-o", str(tmp_path / "ds"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "no label column" in err and "Traceback" not in err


def test_import_export_validate_problems(tmp_path, capsys):
    r = np.random.default_rng(0)
    data = {}
    for s, n in (("train", 4), ("valid", 2), ("test", 2)):
        lab = r.uniform(-3, 3, n).astype(np.float32)
        data[s] = {"id": np.array([f"{s}{i}" for i in range(n)]), "raw_text": np.array(["x"] * n),
                   "text": r.standard_normal((n, 3, 6)).astype(np.float32),
                   "audio": r.standard_normal((n, 4, 2)).astype(np.float32),
                   "vision": r.standard_normal((n, 5, 3)).astype(np.float32),
                   "audio_lengths": np.full(n, 4), "vision_lengths": np.full(n, 5),
                   "regression_labels": lab, "classification_labels": np.sign(lab) + 1,
                   "annotations": np.array(["x"] * n)}
    data["train"]["vision"][1, 2, 0] = np.nan   # NaN feature
    data["train"]["regression_labels"][2] = 7.0  # out of range
    data["test"]["audio_lengths"][0] = 0         # no audio: an absent modality, reported (issue 32)
    pkl = tmp_path / "unaligned_50.pkl"
    with open(pkl, "wb") as fh:
        pickle.dump(data, fh)
    # issue 15: a label outside [-3, 3] is an import error naming split, key and index
    assert main(["dataset", "import", str(pkl), "-o", str(tmp_path / "ds")]) == 2
    assert "train/regression_labels: labels must be finite and inside [-3, 3]: [2]=7" in capsys.readouterr().err
    assert not (tmp_path / "ds" / "manifest.json").exists()
    data["train"]["regression_labels"][2] = 2.5
    with open(pkl, "wb") as fh:
        pickle.dump(data, fh)
    assert main(["dataset", "import", str(pkl), "-o", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "imported unaligned_50.pkl (unaligned, dims 6/2/3)" in out
    # issue 15: the NaN vision value is replaced by 0 and counted per modality
    assert "non-finite feature values replaced by 0: text 0, audio 0, vision 1" in out
    rc = main(["dataset", "validate", str(tmp_path / "ds")])
    out = capsys.readouterr().out
    assert rc == 0  # a sample lacking one modality is reported, not a failure (--strict makes it one)
    assert "[nan]" not in out
    assert "test [absent] audio: 1 of 2 samples without audio (no valid step): test0" in out
    assert main(["dataset", "validate", str(tmp_path / "ds"), "--strict"]) == 1
    # validate still finds NaN features and out-of-range labels written by other means
    from msa_toolkit.data.native import load_dataset, write_dataset

    ds = load_dataset(tmp_path / "ds")

    def corrupt(split):
        for i, x in enumerate(ds.split(split)):
            if split == "train" and i == 1:
                x.features["vision"][2, 0] = np.nan
            if split == "train" and i == 2:
                x.label = 7.0
            yield x

    write_dataset(tmp_path / "bad", ds.spec, {s: corrupt(s) for s in ds.splits})
    assert main(["dataset", "validate", str(tmp_path / "bad")]) == 1
    out = capsys.readouterr().out
    assert "[nan] vision: NaN/inf values in 1 rows of 1 samples: train1" in out
    assert "[label] 1 labels outside [-3, 3]: train2=7" in out
    assert main(["dataset", "export", str(tmp_path / "ds"), "--format", "mmsa", "-o", str(tmp_path / "o.pkl")]) == 0
    with open(tmp_path / "o.pkl", "rb") as fh:
        back = pickle.load(fh)
    assert back["train"]["audio"].shape == (4, 4, 2) and list(back["test"]["audio_lengths"]) == [0, 4]
    assert main(["dataset", "export", str(tmp_path / "ds"), "--format", "csv", "-o", str(tmp_path / "o.csv")]) != 0


def test_validate_duplicate_ids(tmp_path, capsys):
    from msa_toolkit.data.native import load_dataset
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "ds", n_train=4, n_valid=2, n_test=2)
    mf = tmp_path / "ds" / "manifest.json"
    m = json.loads(mf.read_text())
    m["splits"]["test"]["ids"][0] = m["splits"]["train"]["ids"][0]  # corrupt by hand
    mf.write_text(json.dumps(m))
    load_dataset(tmp_path / "ds")
    assert main(["dataset", "validate", str(tmp_path / "ds")]) == 1
    assert "[duplicate] 1 duplicate ids: train0000_0" in capsys.readouterr().out


def test_import_magbert_pickles(tmp_path, capsys):
    """issue 16: `msa dataset import` reads MAG-BERT / MInD pickles (format detected from the content)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "magbert_pickles", Path(__file__).resolve().parents[1] / "data" / "test_magbert.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.make_mosi(tmp_path / "MOSI" / "mosi.pkl")
    assert main(["dataset", "import", str(tmp_path / "MOSI" / "mosi.pkl"), "-o", str(tmp_path / "a"),
                 "--text", "none"]) == 0
    out = capsys.readouterr().out
    assert "imported mosi.pkl (magbert, dict, words-aligned, text none, dims 0/74/47)" in out
    assert "train 4, valid 2, test 3" in out and "non-finite feature values replaced by 0: audio 1, vision 0" in out
    mod.make_mosei(tmp_path / "MOSEI")
    assert main(["dataset", "import", str(tmp_path / "MOSEI"), "-o", str(tmp_path / "b"), "--text", "none",
                 "--format", "magbert"]) == 0
    assert "imported MOSEI (magbert, files, words-aligned" in capsys.readouterr().out
    assert main(["dataset", "import", str(tmp_path / "MOSEI"), "-o", str(tmp_path / "c"), "--format", "mmsa"]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["dataset", "import", str(tmp_path / "MOSEI"), "-o", str(tmp_path / "c"), "--format", "x"]) != 0


@pytest.mark.parametrize("args", [["dataset", "info", "/nonexistent/ds"], ["dataset", "import", "/nope.pkl", "-o", "x"]])
def test_path_validation(args):
    assert main(args) != 0


# -- issue 15 ------------------------------------------------------------------------------------

def test_create_without_mode_prints_created_splits_and_nonfinite_counts(tmp_path, monkeypatch, capsys):
    import msa_toolkit.extraction as P  # data/build.py imports extract_texts from here at call time

    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path / "cache"))
    real = P.extract_texts

    def with_inf(texts, *a, **k):  # one encoder output with a +inf, as a broken encoder could give
        out = real(texts, *a, **k)
        if "v0_0" in out:
            out["v0_0"].sequences["text"].values[0, 0] = np.inf
        return out

    monkeypatch.setattr(P, "extract_texts", with_inf)
    p = tmp_path / "label.csv"
    p.write_text("video_id,clip_id,text,label\n" + "".join(f"v0,{i},words number {i},{i % 3 - 1}\n" for i in range(9)))
    assert main(["dataset", "create", "--labels", str(p), "--transcripts", "label", "-o", str(tmp_path / "ds"),
                 "-q"]) == 0
    out = capsys.readouterr().out
    assert "splits created (seed 0, grouped by clip, asked 70/10/20%): train 66.7%, valid 11.1%, test 22.2%" in out
    assert "non-finite feature values replaced by 0: text 1" in out
    assert main(["dataset", "validate", str(tmp_path / "ds")]) == 0


def test_failed_create_leaves_nothing_and_reruns(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path / "cache"))
    labels = _write_labels(tmp_path, ["a_1,,1,train", "b_1,,0,test"])  # no row has text
    out = tmp_path / "ds"
    assert main(["dataset", "create", "--labels", str(labels), "--transcripts", "label", "-o", str(out), "-q"]) == 2
    assert "no row could be built, so no dataset was written" in capsys.readouterr().err
    assert not out.exists()
    labels = _write_labels(tmp_path, ["a_1,good,1,train", "b_1,bad,0,test"])
    assert main(["dataset", "create", "--labels", str(labels), "--transcripts", "label", "-o", str(out), "-q"]) == 0


def test_validate_fails_on_an_empty_dataset(tmp_path, capsys):
    from msa_toolkit.data.native import write_dataset
    from msa_toolkit.data.synthetic import synthetic_spec

    write_dataset(tmp_path / "empty", synthetic_spec((4, 3, 2)), {})
    assert main(["dataset", "validate", str(tmp_path / "empty")]) == 1
    assert "no splits" in capsys.readouterr().out
    write_dataset(tmp_path / "e2", synthetic_spec((4, 3, 2)), {"train": []})
    assert main(["dataset", "validate", str(tmp_path / "e2")]) == 1
    assert "train [empty] the split has no samples" in capsys.readouterr().out


def test_export_max_len_option(tmp_path, capsys):
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "ds", n_train=6, n_valid=2, n_test=2, dims=(4, 3, 2), lengths=(6, 8, 8))
    assert main(["dataset", "export", str(tmp_path / "ds"), "-o", str(tmp_path / "o.pkl"),
                 "--max-len", "text=3,audio=5"]) == 0
    with open(tmp_path / "o.pkl", "rb") as fh:
        back = pickle.load(fh)
    assert back["train"]["text"].shape[1] == 3 and back["train"]["audio"].shape[1] == 5
    assert "truncated to 3 steps" in capsys.readouterr().err
    assert main(["dataset", "export", str(tmp_path / "ds"), "-o", str(tmp_path / "x.pkl"), "--max-len", "text"]) != 0


def test_info_length_percentile_is_rounded(tmp_path, capsys):
    """`dataset info` shows the 95th length percentile as 16.55, not 16.549999999999997."""
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    make_synthetic_dataset(tmp_path / "ds", n_train=13, n_valid=4, n_test=4, dims=(4, 2, 2), lengths=(9, 20, 16))
    assert main(["dataset", "info", str(tmp_path / "ds"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    p95 = [st["p95"] for sp in info["splits"].values() for st in sp["lengths"].values()]
    assert p95 and all(v == round(v, 2) for v in p95), p95
    assert main(["dataset", "info", str(tmp_path / "ds")]) == 0
    assert "99999" not in capsys.readouterr().out


def test_lost_rows_error_names_the_cli_flag_not_the_python_call(tmp_path, monkeypatch, capsys):
    """issue 31: `msa dataset create` tells the user to pass --allow-missing, not build_dataset(...)."""
    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path / "cache"))
    labels = _write_labels(tmp_path, ["a_1,,1,train", "b_1,good,0,test"])  # a_1 has no text
    assert main(["dataset", "create", "--labels", str(labels), "--transcripts", "label", "-o", str(tmp_path / "ds"),
                 "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-missing" in err
    assert "build_dataset" not in err and "allow_missing=" not in err
    from msa_toolkit.data.build import build_dataset
    from msa_toolkit.errors import RowsLostError

    with pytest.raises(RowsLostError, match=r"allow_missing=True") as e:  # the library names its parameter
        build_dataset(labels, out_dir=tmp_path / "ds2", progress=False)
    assert "--allow-missing" not in str(e.value)


def test_validate_reports_absent_modalities_and_fails_on_them_only_with_strict(tmp_path, capsys):
    """A silent clip has no text and an audio-only one no vision: the presence rule, not a defect. validate reports
    them and exits 0; --strict fails them; a sample with no modality at all always fails (issue 32)."""
    import numpy as np

    from msa_toolkit.data.native import Sample, write_dataset
    from msa_toolkit.data.synthetic import synthetic_spec

    rng = np.random.default_rng(0)

    def sample(i, *present):
        dims = {"text": 4, "audio": 3, "vision": 2}
        return Sample(f"v{i}_1", float(i % 3 - 1), {m: rng.normal(size=(3, dims[m])).astype(np.float32)
                                                    for m in present})

    spec = synthetic_spec((4, 3, 2))
    full = [sample(i, "text", "audio", "vision") for i in range(4)]
    splits = {"train": [*full, sample(5, "audio"), sample(6, "audio", "vision")],
              "test": [sample(8, "text", "audio", "vision"), sample(9, "text", "audio", "vision")]}
    write_dataset(tmp_path / "ds", spec, splits)
    assert main(["dataset", "validate", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "train [absent] text: 2 of 6 samples without text (no valid step): v5_1, v6_1" in out
    assert "train [absent] vision: 1 of 6 samples without vision (no valid step): v5_1" in out
    assert ": OK (8 samples" in out and "2 notice(s)" in out
    assert main(["dataset", "validate", str(tmp_path / "ds"), "--strict"]) == 1
    assert "2 problem(s)" in capsys.readouterr().err
    splits["train"].append(sample(7))  # no modality at all: nothing to learn from
    write_dataset(tmp_path / "bare", spec, splits)
    assert main(["dataset", "validate", str(tmp_path / "bare")]) == 1
    assert "train [empty] 1 samples without any modality: v7_1" in capsys.readouterr().out
