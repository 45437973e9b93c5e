"""Values, not only shapes, from media to dataset to scores (issue 39 items 1 and 2).

One dataset is built once from the committed clips (label transcripts, MiniLM text, openSMILE audio,
MediaPipe faces at 2 fps):

* item 2: ``build_dataset`` writes, per sample and modality, exactly the arrays ``extract()`` produces for
  that file (an independent run into a fresh cache), after its documented transforms: the bundle's
  ``model_sequences()`` (no text without speech), NaN/inf replaced by 0, the integer 1-D arrays;
* item 1: a tiny model trained on it scores every sample the same through ``evaluate`` (the dataset path)
  and through ``predict`` on the media file (the Predictor path: the checkpoint's normalisation statistics
  and truncation lengths, extraction with the checkpoint's FeatureSpec), within fp32 tolerance.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from msa_toolkit.data.build import build_dataset
from msa_toolkit.data.native import load_dataset

#: id -> (committed asset, label text, label, split)
ROWS = {
    "a_1": ("speech_positive.mp4", "i really love this movie", 2.0, "train"),
    "a_2": ("speech_negative.mp4", "this was a terrible film", -2.0, "train"),
    "b_1": ("speech.wav", "hello there this is a test", 0.5, "valid"),
    "c_1": ("speech.flac", "hello there this is a test", 1.0, "test"),
    "d_1": ("noaudio.mp4", "no sound at all", -1.0, "test"),  # audio absent
    "e_1": ("noface.mp4", "nobody to be seen", 0.0, "train"),  # a video stream but no face: no vision modality
}


def _config():
    from msa_toolkit.extraction import ExtractConfig

    # text (label transcripts) + openSMILE audio + MediaPipe faces at 2 fps (a few frames per clip, for speed)
    return ExtractConfig(asr=None, vision_params={"fps": 2.0})


@pytest.fixture(scope="module")
def built(tmp_path_factory, assets_dir):
    root = tmp_path_factory.mktemp("values_ds")
    media = root / "media"
    media.mkdir()
    for sid, (asset, *_rest) in ROWS.items():
        shutil.copy(assets_dir / asset, media / f"{sid}{Path(asset).suffix}")
    lines = ["id,text,label,mode"] + [f"{sid},{t},{y},{s}" for sid, (_a, t, y, s) in ROWS.items()]
    (root / "label.csv").write_text("\n".join(lines) + "\n")
    rep = build_dataset(root / "label.csv", videos=media, out_dir=root / "ds", transcripts="label",
                        config=_config(), cache_dir=root / "cache", progress=False)
    assert rep.failures == [] and rep.sizes == {"train": 3, "valid": 1, "test": 2}
    return root


def _media(root: Path, sid: str) -> Path:
    return root / "media" / f"{sid}{Path(ROWS[sid][0]).suffix}"


def test_dataset_values_are_the_extracted_values(built):
    from msa_toolkit.extraction import extract

    files = [_media(built, sid) for sid in ROWS]
    res = extract(files, config=_config(), cache_dir=built / "fresh_cache", progress=False,
                  transcripts={str(_media(built, sid)): ROWS[sid][1] for sid in ROWS})
    assert res.failures == [] and res.n_cached == 0  # an independent run, not the build's cache
    bundles = {Path(i.path).stem: i.load() for i in res.items}
    ds = load_dataset(built / "ds")
    seen = set()
    for split in ds.splits:
        for s in ds.split(split):
            seen.add(s.id)
            b = bundles[s.id]
            want = b.model_sequences()
            assert split == ROWS[s.id][3] and s.label == ROWS[s.id][2] and s.text == ROWS[s.id][1]
            assert set(s.features) == set(want) & {"text", "audio", "vision"}, s.id
            for m, seq in want.items():
                np.testing.assert_array_equal(s.features[m], np.nan_to_num(seq.values, nan=0.0, posinf=0.0,
                                                                            neginf=0.0), err_msg=f"{s.id} {m}")
                assert s.features[m].dtype == np.float32
                np.testing.assert_array_equal(s.masks.get(m, np.ones(len(seq.values), bool)), seq.mask,
                                              err_msg=f"{s.id} {m} mask")
            want_arrays = {k: np.asarray(v).reshape(-1) for k, v in b.arrays.items()
                           if np.issubdtype(np.asarray(v).dtype, np.integer)}
            assert set(s.arrays) == set(want_arrays), s.id
            for k, v in want_arrays.items():
                np.testing.assert_array_equal(s.arrays[k], v, err_msg=f"{s.id} {k}")
    assert seen == set(ROWS)
    # absent streams stay absent: no audio in noaudio.mp4, no vision in the .wav/.flac files, nor in the clip
    # without a face (one presence rule, issue 31); the clips with audio have hundreds of 100 fps frames, the
    # videos' faces are found (mask True) at 2 fps
    samples = {x.id: x for x in ds.samples()}
    assert {sid: sorted(x.features) for sid, x in samples.items()} == {
        "a_1": ["audio", "text", "vision"], "a_2": ["audio", "text", "vision"], "b_1": ["audio", "text"],
        "c_1": ["audio", "text"], "d_1": ["text", "vision"], "e_1": ["audio", "text"]}
    assert all(samples[sid].features["audio"].shape[0] > 100 for sid in ("a_1", "a_2", "b_1", "c_1"))
    assert all(samples[sid].masks["vision"].any() for sid in ("a_1", "a_2"))


def test_predict_gives_evaluates_score(built, monkeypatch):
    from msa_toolkit.prediction import predict
    from msa_toolkit.training.api import evaluate, train
    from msa_toolkit.training.trainer import Trainer

    train("mult", built / "ds", built / "run", preset="tiny",
          overrides={"trainer.epochs": 2, "trainer.progress": False, "trainer.plots": False,
                     "trainer.device": "cpu", "trainer.batch_size": 2, "trainer.lr": 1e-2})
    ck = built / "run" / "seed_1" / "best.safetensors"
    seen = {}
    real_predict = Trainer.predict

    def record(self, split, drop=()):
        out = real_predict(self, split, drop)
        seen.update(zip(out.ids, out.prediction.tolist()))
        return out

    monkeypatch.setattr(Trainer, "predict", record)
    for split in ("train", "valid", "test"):
        evaluate(ck, built / "ds", split=split, device="cpu")
    monkeypatch.undo()
    assert set(seen) == set(ROWS)
    # predict reads the label transcript from a sidecar next to each clip (in a copy of the media folder)
    clips = built / "clips"
    clips.mkdir(exist_ok=True)
    for sid in ROWS:
        shutil.copy(_media(built, sid), clips / _media(built, sid).name)
        (clips / f"{sid}.txt").write_text(ROWS[sid][1])
    preds = {Path(p.path).stem: p for p in predict([clips / _media(built, sid).name for sid in ROWS],
                                                   checkpoint=ck, cache_dir=built / "cache")}
    assert set(preds) == set(ROWS) and all(p.error is None for p in preds.values()), preds
    got = np.array([preds[sid].score for sid in sorted(ROWS)])
    want = np.clip(np.array([seen[sid] for sid in sorted(ROWS)]), -3, 3)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert np.ptp(want) > 1e-3  # different clips score differently: the comparison has teeth
