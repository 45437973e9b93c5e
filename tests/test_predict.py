"""End-to-end prediction on the committed clips with the bundled default model and with test checkpoints."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from msa_toolkit.errors import SpecMismatchError
from msa_toolkit.prediction import DEFAULT_CHECKPOINT, Predictor, predict
from msa_toolkit.prediction_types import class7, polarity

ASSETS = Path(__file__).parent / "assets"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("predict_cache")


@pytest.fixture(scope="module")
def default_predictor() -> Predictor:
    assert DEFAULT_CHECKPOINT.is_file(), "the bundled default model must be committed"
    return Predictor.load()


@pytest.fixture(scope="module")
def clip_predictions(default_predictor, cache_dir):
    files = ["speech_positive.mp4", "speech_negative.mp4", "silence.mp4", "corrupt.mp4", "empty.mp4", "speech.wav"]
    preds = predict([ASSETS / f for f in files], cache_dir=cache_dir, predictor=default_predictor, segments=True)
    return {Path(p.path).name: p for p in preds}


def test_json_has_segments_only_when_asked():
    from msa_toolkit.prediction_types import Prediction, SegmentPrediction, to_json

    seg = SegmentPrediction(text="hi", start=0.0, end=1.0, score=1.0)
    preds = [Prediction("a.mp4", 1.0, segments=(seg,)), Prediction("b.mp4", 0.5)]
    assert ["segments" in p for p in json.loads(to_json(preds, segments=False))["predictions"]] == [False, False]
    asked = json.loads(to_json(preds, segments=True))["predictions"]
    assert asked[0]["segments"][0]["polarity"] == "positive" and asked[1]["segments"] == []
    assert ["segments" in p for p in json.loads(to_json(preds))["predictions"]] == [True, False]


def test_words_with_times_come_with_the_segments(clip_predictions):
    from msa_toolkit.prediction_types import to_json

    pos = clip_predictions["speech_positive.mp4"]  # predicted with segments=True
    assert [w.text.strip(" .,") for w in pos.words][:3] == ["I", "really", "love"]
    assert all(0 <= w.start <= w.end <= pos.duration + 0.5 for w in pos.words)
    assert [w.start for w in pos.words] == sorted(w.start for w in pos.words)
    [doc] = json.loads(to_json([pos], segments=True))["predictions"]
    assert doc["words"][0] == {"text": pos.words[0].text, "start": pos.words[0].start, "end": pos.words[0].end}
    [plain] = json.loads(to_json([pos], segments=False))["predictions"]
    assert "words" not in plain and "segments" not in plain


def test_polarity_helpers():
    assert class7(2.6) == 3 and class7(-0.4) == 0 and class7(-9) == -3
    assert polarity(0.49) == "neutral" and polarity(0.51) == "positive" and polarity(-1.2) == "negative"


def test_csv_row_of_a_skipped_or_failed_file_has_no_nan():
    """A file without timings (skipped, failed before extraction) leaves total_seconds empty, never 'nan'."""
    import csv
    import io

    from msa_toolkit.prediction_types import Prediction, to_csv

    rows = list(csv.DictReader(io.StringIO(to_csv([
        Prediction("notes.md", None, error="[skipped] not a media file (.md)"),
        Prediction("a.mp4", 1.0, timings={"total": 0.25}),
    ]))))
    assert rows[0]["total_seconds"] == "" and rows[1]["total_seconds"] == "0.250"
    assert not any("nan" in v.lower() for row in rows for v in row.values()), rows


def test_failed_file_does_not_claim_no_speech():
    """speech_found does not apply to a file that failed or was skipped: empty / null, not False."""
    import csv
    import io

    from msa_toolkit.prediction_types import Prediction, to_csv, to_json

    preds = [Prediction("bad.mp4", None, error="[decode] cannot open"), Prediction("quiet.mp4", 0.1),
             Prediction("a.mp4", 1.0, transcript="hi", speech_found=True)]
    rows = list(csv.DictReader(io.StringIO(to_csv(preds))))
    assert [r["speech_found"] for r in rows] == ["", "False", "True"]
    assert [p["speech_found"] for p in json.loads(to_json(preds))["predictions"]] == [None, False, True]


def test_positive_and_negative_sentences(clip_predictions):
    pos, neg = clip_predictions["speech_positive.mp4"], clip_predictions["speech_negative.mp4"]
    assert pos.ok and neg.ok
    assert pos.score > 0, pos
    assert neg.score < 0, neg
    assert pos.polarity == "positive" and neg.polarity == "negative"
    assert "love" in pos.transcript.lower() and "terrible" in neg.transcript.lower()
    assert pos.speech_found and pos.modalities_present == ("text",)
    assert -3 <= pos.score <= 3 and pos.timings["total"] > 0
    assert pos.duration == pytest.approx(5.72, abs=0.1)


def test_audio_only_file_is_scored(clip_predictions):
    p = clip_predictions["speech.wav"]
    assert p.ok and p.speech_found and "station" in p.transcript.lower()


def test_no_speech_clip_is_flagged(clip_predictions):
    p = clip_predictions["silence.mp4"]
    assert p.ok, p.error
    assert p.transcript == "" and not p.speech_found
    assert p.modalities_present == ()
    assert any("no speech" in f for f in p.flags)


def test_bad_files_reported_without_stopping_others(clip_predictions):
    for name in ("corrupt.mp4", "empty.mp4"):
        p = clip_predictions[name]
        assert not p.ok and p.score is None and p.path.endswith(name) and "decode" in p.error, p
    assert sum(p.ok for p in clip_predictions.values()) == 4


def test_segments_timeline(clip_predictions, tmp_path):
    from msa_toolkit.prediction import plot_timeline

    pos = clip_predictions["speech_positive.mp4"]
    assert len(pos.segments) >= 1
    for s in pos.segments:
        assert 0 <= s.start < s.end <= pos.duration + 0.5 and -3 <= s.score <= 3 and s.text
    png = plot_timeline(pos, tmp_path / "t.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_non_finite_score_is_a_failed_file_not_a_label(default_predictor, cache_dir, tmp_path):
    """A checkpoint whose output is NaN gives an error row, never 'nan' labelled 'strongly negative'."""
    import csv
    import io

    import torch

    from msa_toolkit.prediction_types import to_csv, to_json

    ck = default_predictor.checkpoint
    broken = dataclasses.replace(default_predictor, checkpoint=dataclasses.replace(ck, model=_nan_copy(ck.model)))
    (p,) = predict([ASSETS / "speech_positive.mp4"], cache_dir=cache_dir, predictor=broken, segments=True)
    assert not p.ok and p.score is None and "[model]" in p.error and "non-finite" in p.error, p
    assert p.polarity is None and p.class7 is None and p.segments == ()
    row = next(csv.DictReader(io.StringIO(to_csv([p]))))
    assert row["score"] == "" and row["label7"] == "" and "nan" not in row["score"] + row["polarity"]
    assert json.loads(to_json([p]))["predictions"][0]["class7"] is None
    assert torch.isfinite(next(ck.model.parameters())).all()  # the shared predictor is left intact


def _nan_copy(model):
    import copy

    import torch

    out = copy.deepcopy(model)
    with torch.no_grad():
        for prm in out.parameters():
            prm.fill_(float("nan"))
    return out


def test_plot_dir_without_segments_is_an_error(tmp_path, capsys):
    from msa_toolkit.cli.main import main

    assert main(["predict", str(ASSETS / "speech.wav"), "--plot-dir", str(tmp_path / "plots"), "-q"]) == 2
    assert "pass --segments" in capsys.readouterr().err and not (tmp_path / "plots").exists()


def test_timelines_of_same_named_clips_do_not_overwrite_each_other(tmp_path):
    from msa_toolkit.cli.main import main

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "clip.wav").write_bytes((ASSETS / "speech.wav").read_bytes())
    args = ["predict", str(tmp_path / "a" / "clip.wav"), str(tmp_path / "b" / "clip.wav"), "--segments",
            "--plot-dir", str(tmp_path / "plots"), "--cache-dir", str(tmp_path / "cache"), "-q"]
    assert main(args) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["clip__1_timeline.png", "clip_timeline.png"]


def _save(tmp_path, spec, model="text_only", **over):
    from msa_toolkit.models import create_model
    from msa_toolkit.training.checkpoint import save_checkpoint

    dims = {f"{m}_dim": max(1, spec.dims[m]) for m in ("text", "audio", "vision")}
    net = create_model(model, preset="tiny", **{**dims, **over})
    return save_checkpoint(tmp_path / f"{model}.safetensors", net, spec)


def test_mismatched_checkpoints_give_clear_errors(tmp_path):
    from msa_toolkit.spec import ExtractorSpec, FeatureSpec

    # a text model that is not available offline
    spec = FeatureSpec((ExtractorSpec("transformer", "text", "1", {"model": "bert-base-uncased"}, 768),))
    with pytest.raises(SpecMismatchError, match="bert-base-uncased|cannot reproduce"):
        Predictor.load(_save(tmp_path, spec))
    # precomputed features imported from an MMSA pickle cannot be re-extracted from media
    spec = FeatureSpec((ExtractorSpec("mmsa_text", "text", "0", {}, 768),), origin={"source": "mmsa_pickle"})
    with pytest.raises(SpecMismatchError, match="mmsa_pickle"):
        Predictor.load(_save(tmp_path, spec))
    # the bundled extractor but a different recorded dimension
    from msa_toolkit.extraction import ExtractConfig

    real = ExtractConfig(audio=None, vision=None).build_spec()
    bad = real.with_extractors([e if e.modality != "text" else ExtractorSpec(
        e.name, e.modality, e.version, e.params, 768, e.frame_rate, e.feature_names) for e in real.extractors])
    with pytest.raises(SpecMismatchError, match="text.dim"):
        Predictor.load(_save(tmp_path, bad))


def test_extractor_flags_that_change_the_features_say_which_side_is_which(default_predictor):
    from msa_toolkit.extraction import ExtractConfig

    cfg = ExtractConfig.from_spec(default_predictor.checkpoint.spec)
    with pytest.raises(SpecMismatchError, match=r"(?s)extractor flags != checkpoint\).*alignment: 'words' != 'none'"):
        default_predictor.with_extract_config(dataclasses.replace(cfg, align="words"))


def test_multimodal_checkpoint_extracts_what_its_spec_names(tmp_path, cache_dir):
    """An (untrained) fusion checkpoint over text + eGeMAPS + face features runs end to end."""
    from msa_toolkit.extraction import ExtractConfig

    spec = ExtractConfig().build_spec()
    assert set(spec.modalities) == {"text", "audio", "vision"}
    ck = _save(tmp_path, spec, model="late_fusion")
    pred = Predictor.load(ck)
    out = {Path(p.path).name: p for p in predict([ASSETS / "speech_positive.mp4", ASSETS / "noface.mp4"],
                                                  predictor=pred, cache_dir=cache_dir)}
    pos, noface = out["speech_positive.mp4"], out["noface.mp4"]
    assert pos.ok and set(pos.modalities_present) == {"text", "audio", "vision"}
    assert pos.face_ratio > 0.9
    assert noface.ok and noface.face_ratio == 0.0 and "vision" not in noface.modalities_present
    assert any("no face" in f for f in noface.flags)


def test_cli_predict_json_csv(tmp_path, cache_dir):
    from typer.testing import CliRunner

    from msa_toolkit.cli.main import app

    res = CliRunner().invoke(app, ["predict", str(ASSETS / "speech_negative.mp4"), str(ASSETS / "corrupt.mp4"),
                                   "--json", str(tmp_path / "o.json"), "--csv", str(tmp_path / "o.csv"),
                                   "--cache-dir", str(cache_dir)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "speech_negative.mp4" in res.output and "error" in res.output
    doc = json.loads((tmp_path / "o.json").read_text())
    by = {Path(p["path"]).name: p for p in doc["predictions"]}
    assert by["speech_negative.mp4"]["polarity"] == "negative" and by["corrupt.mp4"]["error"]
    assert all("segments" not in p for p in doc["predictions"])  # only with --segments (docs/formats.md)
    assert (tmp_path / "o.csv").read_text().splitlines()[0].startswith("path,score,polarity")
    # every file failing is a non-zero exit
    res = CliRunner().invoke(app, ["predict", str(ASSETS / "corrupt.mp4"), "--cache-dir", str(cache_dir)])
    assert res.exit_code == 1


def test_unreadable_bundle_is_only_that_files_error_row(default_predictor, tmp_path, monkeypatch):
    """A bundle that cannot be read gives its file an error row; every other file keeps its result."""
    from msa_toolkit.extraction import FileResult

    orig = FileResult.load

    def flaky(self):
        if self.path.endswith("speech.wav"):
            raise OSError("Input/output error")
        return orig(self)

    monkeypatch.setattr(FileResult, "load", flaky)
    preds = {Path(p.path).name: p for p in predict([ASSETS / "speech_positive.mp4", ASSETS / "speech.wav"],
                                                    predictor=default_predictor, cache_dir=tmp_path)}
    assert preds["speech_positive.mp4"].ok and preds["speech_positive.mp4"].score is not None
    assert not preds["speech.wav"].ok and "Input/output error" in preds["speech.wav"].error


def test_damaged_cache_entry_is_recomputed_by_predict(default_predictor, tmp_path):
    """A truncated cached .safetensors next to an intact .json: predict recomputes it, every file is scored."""
    files = [ASSETS / "speech_positive.mp4", ASSETS / "speech.wav"]
    first = {p.path: p.score for p in predict(files, predictor=default_predictor, cache_dir=tmp_path)}
    entries = sorted(tmp_path.rglob("*.safetensors"))
    assert len(entries) == 2
    data = entries[0].read_bytes()
    entries[0].write_bytes(data[: len(data) // 2])
    again = predict(files, predictor=default_predictor, cache_dir=tmp_path)
    assert all(p.ok for p in again) and {p.path: p.score for p in again} == first


def test_cli_predict_json_to_stdout(tmp_path, cache_dir):
    """``--json -`` wrote a file literally named '-'; it now writes the JSON to stdout, the table to stderr."""
    from typer.testing import CliRunner

    from msa_toolkit.cli.main import app

    res = CliRunner().invoke(app, ["predict", str(ASSETS / "speech_negative.mp4"), "--json", "-",
                                   "--cache-dir", str(cache_dir)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # stdout is the JSON document alone
    assert Path(doc["predictions"][0]["path"]).name == "speech_negative.mp4"
    assert "speech_negative.mp4" in res.stderr  # the table
    assert not Path("-").exists()
    res = CliRunner().invoke(app, ["predict", str(ASSETS / "speech_negative.mp4"), "--csv", "-", "-q",
                                   "--cache-dir", str(cache_dir)])
    assert res.exit_code == 0 and res.stdout.splitlines()[0].startswith("path,score,polarity")
    res = CliRunner().invoke(app, ["predict", str(ASSETS / "speech_negative.mp4"), "--json", "-", "--csv", "-"])
    assert res.exit_code != 0 and "both ask for stdout" in str(res.exception)  # main() turns it into exit 2
