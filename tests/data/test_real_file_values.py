"""Golden values from the real files in ../shared/data (issue 39 item 9): the layout checks run on files
the tests did not write. Skipped where shared/data is absent (the ``shared_data`` fixture).

* ``mosi_utterance/mosi_poria_utterance.pkl`` (Poria et al.'s CMU-MOSI utterance features, MMSA pickle
  layout): imported, every sample's features, label and fields equal the pickle's own arrays (read here with
  ``pickle``), and a few values and per-split sums are pinned;
* ``mosi/label.csv`` and ``mosei/label.csv`` (the two real label-file conventions): rows, splits, texts
  and per-split label sums pinned.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from msa_toolkit.data.labels import read_labels
from msa_toolkit.data.mmsa import import_mmsa

#: split -> (samples, sum of text / audio / vision features, sum of labels), float64 sums
POR_SUMS = {
    "train": (1289, -83.32055414815136, 238922.93858436626, 272281.4141759508, -198.30000053346157),
    "valid": (158, 199.91701302223748, 35178.177106775795, 28715.87048922549, 74.11666584014893),
    "test": (752, 749.5386677839679, 133119.2993601613, 112903.85789707117, 278.70000244677067),
}


@pytest.fixture(scope="module")
def poria(shared_data, tmp_path_factory):
    f = shared_data / "mosi_utterance" / "mosi_poria_utterance.pkl"
    if not f.is_file():
        pytest.skip("mosi_poria_utterance.pkl not present")
    ds, rep = import_mmsa(f, tmp_path_factory.mktemp("poria") / "ds")
    with open(f, "rb") as fh:
        raw = pickle.load(fh)
    return ds, rep, raw


def test_poria_pickle_golden_values(poria):
    ds, rep, _ = poria
    assert rep.layout == "unaligned" and rep.nonfinite == {"text": 0, "audio": 0, "vision": 0}
    s = ds.split("test")[0]
    assert (s.id, s.video_id, s.clip_id, s.text, s.annotation) == (
        "03bSnISJMiM_1", "03bSnISJMiM", "1", "ANYHOW IT WAS REALLY GOOD", "Positive")
    assert s.label == np.float32(2.4) and s.class_label == 2.0
    np.testing.assert_array_equal(s.features["text"][0, :4],
                                  np.array([-0.571784, 0.393392, 0.485293, -0.00591728], np.float32))
    np.testing.assert_array_equal(s.features["audio"][0, :4], np.array([211.09, 0.61562, 0.12136, 0.36468], np.float32))
    np.testing.assert_array_equal(s.features["vision"][0, :4], np.array([0.0, 1.38628, 0.0, 0.0], np.float32))
    for split, (n, st, sa, sv, sy) in POR_SUMS.items():
        samples = list(ds.split(split))
        assert len(samples) == n
        sums = [sum(float(x.features[m].astype(np.float64).sum()) for x in samples) for m in ("text", "audio", "vision")]
        assert sums == pytest.approx([st, sa, sv], rel=1e-9)
        assert sum(float(x.label) for x in samples) == pytest.approx(sy, rel=1e-9)


def test_poria_pickle_imports_its_own_arrays(poria):
    ds, _, raw = poria
    for split in ("train", "valid", "test"):
        r = raw[split]
        samples = list(ds.split(split))
        assert [x.id for x in samples] == [str(i) for i in r["id"]]
        np.testing.assert_array_equal([x.label for x in samples], np.asarray(r["regression_labels"], np.float32))
        np.testing.assert_array_equal([x.class_label for x in samples], r["classification_labels"])
        assert [x.text for x in samples] == [str(t) for t in r["raw_text"]]
        assert [x.annotation for x in samples] == [str(a) for a in r["annotations"]]
        for m in ("text", "audio", "vision"):
            np.testing.assert_array_equal(np.stack([x.features[m] for x in samples]), r[m], err_msg=f"{split} {m}")


#: file -> split -> (rows, sum of labels, first row (id, text, label), last row (id, label))
LABEL_FILES = {
    "mosi": {
        "train": (1281, 300.4833333599995, ("03bSnISJMiM_1", "anyhow it was really good", 2.4), ("W8NXH0Djyww_32", 2.0)),
        "valid": (229, 70.88333339999996, ("WKA5OygbEKI_1", "uh i really enjoyed doing them for the philly d movie club "
                                           "so i thought oh why not", 1.8), ("c5xsKMxpXnc_15", -1.4)),
        "test": (685, -215.45000000000007, ("c7UH_rxdZv4_1", "oh my gosh bad movie", -2.8), ("zhpQhgha_KU_35", 0.6)),
    },
    "mosei": {
        "train": (16274, 2366.333385930008, ("-3g5yACwYnA_82_7645", None, 1.0), ("zx4W0Vuus-I_15_057", 1.0)),
        "valid": (1861, 357.1666724400001, ("--qXJuDtHPw_23_199", "I see that a writer is somebody who has an "
                                            "incredible command of mechanics of the English language.", 1.0),
                  ("zk2jTlAtvSU_45_877", 0.0)),
        "test": (4653, 664.8333503299983, ("-6rXp3zJ3kc_14_468", None, 0.0), ("zvZd3V5D5Ik_11_776", 1.0)),
    },
}


@pytest.mark.parametrize("name", ["mosi", "mosei"])
def test_real_label_files_golden_values(shared_data, name):
    table = read_labels(shared_data / name / "label.csv")
    assert not table.splits_created
    for split, (n, total, (fid, ftext, fy), (lid, ly)) in LABEL_FILES[name].items():
        rows = [r for r in table.rows if r.split == split]
        assert len(rows) == n
        assert sum(r.label for r in rows) == pytest.approx(total, rel=1e-12)
        assert (rows[0].id, rows[0].label, rows[-1].id, rows[-1].label) == (fid, fy, lid, ly)
        if ftext is not None:
            assert rows[0].text == ftext
    if name == "mosei":  # means of annotators' integer scores: steps of 1/3 (the README's), 50 rows in 1/6
        y = np.array([r.label for r in table.rows])
        thirds = np.abs(y * 3 - np.round(y * 3)) < 1e-4
        assert np.abs(y).max() <= 3 and np.allclose(y * 6, np.round(y * 6), atol=1e-4)
        assert int((~thirds).sum()) == 50
        r = table.rows[0]
        assert (r.video_id, r.clip_id) == ("-3g5yACwYnA", "82_7645")
