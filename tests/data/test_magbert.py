"""MAG-BERT / MInD pickle import (mosi.pkl one-dict form and train/dev/test.pkl three-file form), in the
exact item layouts of MInD's dataloaders/loader_mosi.py and create_dataset.py, made here; bad layouts."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from msa_toolkit.data.importers import detect_format, import_pickle
from msa_toolkit.data.magbert import import_magbert, read_magbert
from msa_toolkit.data.module import DataModule
from msa_toolkit.errors import DatasetError

SIZES = {"train": 4, "dev": 2, "test": 3}
#: a WordPiece vocabulary for the tiny BERT below ("movies" -> movie ##s)
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "was", "##s"]
WORDS = [["the", "movies", "was", "good"], ["bad"], ["the", "movie"]]


def _items(split, n, dv, mosei, seed):
    """n items of one split: MAG-BERT's ((words, visual, acoustic), label, segment) or, with ``mosei``,
    MInD's ((word_ids, visual, acoustic, words), label, segment) with a 7-column CMU_MOSEI_Labels row."""
    r = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = WORDS[i % len(WORDS)]
        v = r.standard_normal((len(words), dv))
        a = r.standard_normal((len(words), 74))
        y = np.round(r.uniform(-3, 3), 1)
        seg = f"vid{split}{i // 2}[{i % 2}]"
        if mosei:
            out.append(((np.arange(len(words)), v, a, list(words)), np.array([[y] + [0.5] * 6]), seg))
        else:
            out.append(((list(words), v, a), np.array([[y]]), seg))
    return out


def make_mosi(path, seed=0):
    """A tiny mosi.pkl: {"train"/"dev"/"test": [item, ...]}, visual 47-d, acoustic 74-d."""
    data = {s: _items(s, n, 47, False, seed + k) for k, (s, n) in enumerate(SIZES.items())}
    data["train"][0][0][2][1, 0] = np.nan  # a non-finite value (word "movies"), counted once and replaced
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=4)
    return data


def make_mosei(folder, seed=0):
    """Tiny train.pkl, dev.pkl and test.pkl: one list each, visual 35-d, acoustic 74-d."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for k, (s, n) in enumerate(SIZES.items()):
        data[s] = _items(s, n, 35, True, seed + k)
        with open(folder / f"{s}.pkl", "wb") as fh:
            pickle.dump(data[s], fh, protocol=4)
    return data


def _tiny_bert(folder):
    from transformers import BertConfig, BertModel, BertTokenizerFast

    BertTokenizerFast(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True).save_pretrained(folder)
    BertModel(BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return _tiny_bert(tmp_path_factory.mktemp("bert"))


def test_mosi_dict_form_token_aligned(tmp_path, bert):
    data = make_mosi(tmp_path / "mosi.pkl")
    ds, rep = import_magbert(tmp_path / "mosi.pkl", tmp_path / "ds", text_model=bert)
    assert ds.num_samples() == {"train": 4, "valid": 2, "test": 3}
    assert rep.form == "dict" and rep.align == "tokens" and rep.dims == {"text": 16, "audio": 74, "vision": 47}
    assert rep.nonfinite["audio"] == 1 and any("non-finite" in w for w in rep.warnings)
    assert ds.spec.origin == {"source": "magbert_pickle", "file": "mosi.pkl", "form": "dict", "align": "tokens"}
    train = {s.id: s for s in ds.split("train")}
    s = train["vidtrain0[0]"]
    assert s.video_id == "vidtrain0" and s.clip_id == "0" and s.text == "the movies was good"
    assert s.label == pytest.approx(float(data["train"][0][1][0, 0]))
    ids = s.arrays["text.input_ids"].tolist()
    # [CLS] the movie ##s was good [SEP]: audio/vision rows repeated per token, zeros at [CLS]/[SEP]
    assert ids == [VOCAB.index(t) for t in ("[CLS]", "the", "movie", "##s", "was", "good", "[SEP]")]
    v = data["train"][0][0][1].astype(np.float32)
    assert s.features["vision"].shape == (7, 47) and s.features["text"].shape == (7, 16)
    np.testing.assert_allclose(s.features["vision"][[1, 2, 3, 4, 5]], v[[0, 1, 1, 2, 3]])
    assert not s.features["vision"][[0, 6]].any() and not s.features["audio"][[0, 6]].any()
    assert s.features["audio"][2, 0] == 0.0 and s.features["audio"][3, 0] == 0.0  # the NaN: word 1 -> tokens 2, 3
    batch = next(iter(DataModule(ds, batch_size=4).loader("train")))
    assert batch.text_tokens is not None and batch.audio.shape[1] == batch.text.shape[1]


def test_mosei_three_files_word_aligned(tmp_path, bert):
    data = make_mosei(tmp_path / "MOSEI")
    assert detect_format(tmp_path / "MOSEI" / "train.pkl") == ("magbert", None)
    ds, rep, fmt = import_pickle(tmp_path / "MOSEI" / "train.pkl", tmp_path / "ds", text_model=bert)
    assert fmt == "magbert" and rep.form == "files" and rep.align == "words"
    assert ds.num_samples() == {"train": 4, "valid": 2, "test": 3}
    assert rep.dims["vision"] == 35 and not any(rep.nonfinite.values())
    s = {x.id: x for x in ds.split("test")}["vidtest1[0]"]
    words = data["test"][2][0][3]
    assert s.text == " ".join(words)
    np.testing.assert_allclose(s.features["vision"], data["test"][2][0][1].astype(np.float32))
    # the sentiment is the first of the seven label columns
    assert s.label == pytest.approx(float(data["test"][2][1][0, 0]))
    # the folder works as well
    ds2, _, _ = import_pickle(tmp_path / "MOSEI", tmp_path / "ds2", text_model=None)
    assert ds2.num_samples() == ds.num_samples() and not ds2.spec.has("text")


def test_auto_detection_and_mmsa_still_imported(tmp_path):
    import importlib.util
    from pathlib import Path

    make_mosi(tmp_path / "mosi.pkl")
    fmt, content = detect_format(tmp_path / "mosi.pkl")
    assert fmt == "magbert" and set(content) == {"train", "dev", "test"}
    spec = importlib.util.spec_from_file_location("mmsa_pickles", Path(__file__).with_name("test_mmsa.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod._make_pickle(tmp_path / "aligned_50.pkl")
    ds, rep, fmt = import_pickle(tmp_path / "aligned_50.pkl", tmp_path / "ds")
    assert fmt == "mmsa" and rep.layout == "aligned" and ds.num_samples()["train"] == 5
    # --text none: words only, one row per word even for the one-dict form
    ds, rep, fmt = import_pickle(tmp_path / "mosi.pkl", tmp_path / "ds2", fmt="magbert", text_model=None)
    assert rep.align == "words" and ds.split("train")[0].features["audio"].shape == (4, 74)
    with pytest.raises(DatasetError, match="is a list, expected a dict of arrays .a MAG-BERT"):
        import_pickle(tmp_path / "mosi.pkl", tmp_path / "ds3", fmt="mmsa")
    mmsa_file = _dump(tmp_path / "aligned_50.pkl", {s: {"id": np.array(["a$_$0"])} for s in ("train", "valid", "test")})
    with pytest.raises(DatasetError, match=r"found dict \(an MMSA pickle\? import it with --format mmsa\)"):
        import_pickle(mmsa_file, tmp_path / "ds4", fmt="magbert", text_model=None)


def _dump(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=4)
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("dev"), r"no dev key"),
    (lambda d: d.__setitem__("test", []), r"\[test\]: the split is empty"),
    (lambda d: d["train"].__setitem__(1, ("words", 1.0)), r"train\[1\]: expected \(\(words"),
    (lambda d: d["train"].__setitem__(1, (d["train"][1][0][:2], np.array([[1.0]]), "x[1]")),
     r"train\[1\]: expected .* found tuple of length 3 whose first entry \(the features\) is a tuple of length 2"),
    (lambda d: d["train"].__setitem__(0, ((d["train"][0][0][0], np.zeros((2, 47)), d["train"][0][0][2]),
                                          np.array([[1.0]]), "x[0]")),
     r"train\[0\]: vision has shape \(2, 47\), expected \(4, D\)"),
    (lambda d: d["dev"].__setitem__(0, (([1, 2], np.zeros((2, 47)), np.zeros((2, 74))), np.array([[1.0]]), "y[0]")),
     r"valid\[0\]: the words must be strings"),
    (lambda d: d["test"].__setitem__(0, ((["bad"], np.zeros((1, 47)), np.zeros((1, 74))), np.array([[7.0]]), "z[0]")),
     r"test\[0\]: the label must be finite and inside \[-3, 3\]"),
    (lambda d: d["test"].__setitem__(0, ((["bad"], np.zeros((1, 46)), np.zeros((1, 74))), np.array([[1.0]]), "z[0]")),
     r"vision is 46-d, 47-d elsewhere"),
    (lambda d: d["test"].__setitem__(0, d["train"][0]), r"'vidtrain0\[0\]' appears twice"),
])
def test_bad_layouts_are_clear_errors(tmp_path, mutate, message):
    data = make_mosi(tmp_path / "ok.pkl")
    mutate(data)
    path = _dump(tmp_path / "mosi.pkl", data)
    with pytest.raises(DatasetError, match=message):
        read_magbert(path)


def test_bad_files(tmp_path):
    with pytest.raises(DatasetError, match="cannot read as a pickle"):
        read_magbert((tmp_path / "mosi.pkl").write_bytes(b"not a pickle") and tmp_path / "mosi.pkl")
    with pytest.raises(DatasetError, match="no mosi.pkl and no train.pkl"):
        read_magbert(tmp_path / "nothing_here" if (tmp_path / "nothing_here").mkdir() is None else None)
    lone = tmp_path / "lone"
    lone.mkdir()
    _dump(lone / "train.pkl", _items("train", 2, 35, True, 0))
    with pytest.raises(DatasetError, match="side by side"):
        import_pickle(lone / "train.pkl", tmp_path / "ds", text_model=None)
    with pytest.raises(DatasetError, match="neither an MMSA pickle"):
        detect_format(_dump(tmp_path / "x.pkl", 3))
    with pytest.raises(DatasetError, match="align must be"):
        import_magbert(lone, tmp_path / "ds", align="frames")
