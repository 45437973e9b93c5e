"""Whisper ASR: transcripts of the real-speech fixtures, empty transcripts on silence, guards, errors."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from msa_toolkit.errors import ModelLoadError
from msa_toolkit.extractors.asr import HALLUCINATIONS, WhisperASR, bundled_whisper_path, energy_gate
from msa_toolkit.extractors.base import create_extractor

SR = 16000


def wer(ref: str, hyp: str) -> float:
    """Word error rate after lowercasing and removing punctuation (word-level Levenshtein)."""
    norm = lambda s: re.sub(r"[^\w\s']", " ", s.lower()).split()  # noqa: E731
    r, h = norm(ref), norm(hyp)
    d = np.arange(len(h) + 1)
    for i, rw in enumerate(r, 1):
        prev, d = d, np.empty_like(d)
        d[0] = i
        for j, hw in enumerate(h, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (rw != hw))
    return float(d[-1]) / max(1, len(r))


@pytest.fixture(scope="module")
def asr():
    a = create_extractor("whisper")
    a.load()
    return a


@pytest.fixture(scope="module")
def sentences(assets_dir):
    return json.loads((assets_dir / "sentences.json").read_text())


def _load(path):
    if path.suffix == ".wav":
        x, sr = sf.read(str(path), dtype="float32")
        assert sr == SR
        return x
    media = pytest.importorskip("msa_toolkit.media")
    return media.load_audio(path, sample_rate=SR)


def test_wer_helper():
    assert wer("a b c d", "a b c d") == 0.0
    assert wer("a b c d", "a x c") == 0.5


@pytest.mark.parametrize("name", ["speech.wav", "speech_positive.mp4", "speech_negative.mp4", "noface.mp4"])
def test_transcripts_match_known_sentences(asr, assets_dir, sentences, name):
    wave = _load(assets_dir / name)
    tr = asr.transcribe(wave, SR)
    assert tr.source == "whisper" and tr.language == "en"
    assert wer(sentences[name]["text"], tr.text) <= 0.2, tr.text
    # word timestamps: inside the clip, ordered, each word non-negative length
    starts = np.array([w.start for w in tr.words])
    ends = np.array([w.end for w in tr.words])
    assert np.all(ends >= starts) and np.all(np.diff(starts) >= 0)
    assert starts[0] >= 0 and ends[-1] <= len(wave) / SR + 0.05
    assert all(0.0 <= w.probability <= 1.0 for w in tr.words)
    # segments index into the word list
    assert tr.segments[0].first_word == 0 and tr.segments[-1].last_word == len(tr.words)
    assert "-->" in tr.to_srt()


def test_silence_clip_gives_empty_transcript(asr, assets_dir):
    tr = asr.transcribe(_load(assets_dir / "silence.mp4"), SR)
    assert tr.is_empty and tr.text == "" and tr.source == "whisper"


def test_digital_silence_and_noise_give_empty_transcript(asr):
    rng = np.random.default_rng(0)
    assert asr.transcribe(np.zeros(3 * SR, np.float32), SR).is_empty
    # steady ambient noise, loud enough to pass a plain level check, but no speech
    noise = (0.02 * rng.standard_normal(4 * SR)).astype(np.float32)
    assert asr.transcribe(noise, SR).is_empty


def test_energy_gate():
    rng = np.random.default_rng(1)
    assert not energy_gate(np.zeros(SR, np.float32), SR, 12, -50)
    assert not energy_gate((0.01 * rng.standard_normal(2 * SR)).astype(np.float32), SR, 12, -50)
    t = np.arange(2 * SR) / SR
    bursts = (0.3 * np.sin(2 * np.pi * 200 * t) * (np.sin(2 * np.pi * 1.5 * t) > 0)).astype(np.float32)
    bursts += (0.001 * rng.standard_normal(bursts.size)).astype(np.float32)
    assert energy_gate(bursts, SR, 12, -50)
    assert not energy_gate(np.zeros(10, np.float32), SR, 12, -50)


def _seg(text, no_speech=0.0, logprob=-0.2, probs=(0.9,)):
    words = [SimpleNamespace(word=w, start=0.0, end=0.1, probability=p) for w, p in zip(text.split(), probs)]
    return SimpleNamespace(text=text, no_speech_prob=no_speech, avg_logprob=logprob, words=words)


def test_hallucination_filter():
    a = WhisperASR()
    assert "thank you" in HALLUCINATIONS and "you" in HALLUCINATIONS
    # known phrases dropped unless the model is confident
    assert a._is_hallucination(_seg(" you", no_speech=0.3, probs=(0.9,)))
    assert a._is_hallucination(_seg(" Thank you.", no_speech=0.05, probs=(0.3, 0.4)))
    assert not a._is_hallucination(_seg(" Thank you.", no_speech=0.01, probs=(0.95, 0.9)))
    # confidence rules apply to any text
    assert a._is_hallucination(_seg(" The cat sat.", no_speech=0.8))
    assert a._is_hallucination(_seg(" The cat sat.", logprob=-1.4))
    assert not a._is_hallucination(_seg(" The cat sat.", no_speech=0.2, logprob=-0.3))


def test_bundled_model_and_spec():
    assert (bundled_whisper_path() / "model.bin").is_file()
    spec = WhisperASR(compute_type="float32").spec
    assert spec.modality == "asr" and spec.dim == 0
    assert spec.params["model"] == "tiny.en" and "compute_type" not in spec.params


def test_model_errors(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(ModelLoadError, match="model.bin"):
        WhisperASR(model=str(tmp_path / "m"))
    a = WhisperASR(model="no-such-whisper-model-xyz")
    with pytest.raises(ModelLoadError, match="offline"):
        a.load()


def test_wrong_sample_rate(asr):
    with pytest.raises(ValueError, match="16 kHz"):
        asr.transcribe(np.ones(8000, np.float32), 8000)


def test_split_points_cut_in_quiet_places():
    from msa_toolkit.extractors.asr import split_points

    t = np.arange(30 * SR) / SR
    x = np.sin(2 * np.pi * 220 * t).astype(np.float32)
    for q in (8.0, 16.0):  # quiet gaps
        x[int(q * SR):int((q + 0.3) * SR)] = 0
    cuts = split_points(x, SR, 10.0, 4.0)
    assert cuts[0] == 0 and cuts[-1] == len(x) and np.all(np.diff(cuts) <= 10 * SR)
    assert 8.0 <= cuts[1] / SR <= 8.3 and 16.0 <= cuts[2] / SR <= 16.3
    assert split_points(x, SR, 0) == [0, len(x)] and split_points(x, SR, 60) == [0, len(x)]


def test_long_audio_is_transcribed_in_pieces(asr, assets_dir, sentences):
    wave = _load(assets_dir / "speech.wav")
    gap = np.zeros(int(1.5 * SR), np.float32)
    x = np.concatenate([wave, gap, wave, gap, wave])
    chunked = WhisperASR(chunk_seconds=9.0)
    chunked._model, chunked._loaded = asr._model, True  # share the loaded model
    tr = chunked.transcribe(x, SR)
    assert wer(" ".join([sentences["speech.wav"]["text"]] * 3), tr.text) <= 0.2, tr.text
    starts = np.array([w.start for w in tr.words])
    assert np.all(np.diff(starts) >= 0) and starts[-1] > 2 * (len(wave) + len(gap)) / SR
    assert tr.segments[-1].last_word == len(tr.words)


def _fake_decoder(calls):
    def transcribe(audio, **kw):
        calls.append(kw)
        return iter(()), SimpleNamespace(language="en")
    return SimpleNamespace(transcribe=transcribe)


def test_fallback_samples_one_candidate_by_default():
    """A window decoded again at a fall-back temperature samples best_of candidates: 1 by default
    (openai-whisper's transcribe()), not faster-whisper's 5, which doubled ASR time on repetitive speech."""
    rng = np.random.default_rng(0)
    speechy = (np.sin(np.linspace(0, 2000, 3 * SR)) * np.repeat(rng.random(30), SR // 10)).astype(np.float32)
    for params, want in (({}, 1), ({"best_of": 5}, 5)):
        calls: list[dict] = []
        a = WhisperASR(**params)
        a._model, a._loaded = _fake_decoder(calls), True
        a.transcribe(speechy, SR)
        assert [c["best_of"] for c in calls] == [want]
    assert WhisperASR().spec.params["best_of"] == 1


def test_spec_recorded_before_best_of_reproduces_faster_whispers_default():
    """A FeatureSpec written before ``best_of`` existed was decoded with faster-whisper's 5 candidates:
    from_spec must reproduce that, not today's default, and must not call the spec incompatible."""
    from dataclasses import replace

    from msa_toolkit.extraction.config import ExtractConfig
    from msa_toolkit.spec import FeatureSpec

    spec = ExtractConfig(vision=None, audio=None).build_spec()
    asr = spec.get("asr")
    old = FeatureSpec((replace(asr, params={k: v for k, v in asr.params.items() if k != "best_of"}),
                       spec.get("text")))
    cfg = ExtractConfig.from_spec(old)
    assert cfg.asr == "whisper" and cfg.asr_params["best_of"] == 5
    assert cfg.build_spec().get("asr").params["best_of"] == 5
    assert ExtractConfig.from_spec(spec).asr_params["best_of"] == 1


def test_language_must_be_a_whisper_language_code(tmp_path, capsys):
    """issue 31: --language zz is refused in one line (exit 2), before any work."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    from msa_toolkit.cli.main import main
    from msa_toolkit.extractors.asr import WHISPER_LANGUAGES

    assert tuple(WHISPER_LANGUAGES) == tuple(_LANGUAGE_CODES)
    with pytest.raises(ValueError, match="'zz' is not a Whisper language code"):
        create_extractor("whisper", language="zz")
    with pytest.raises(ValueError, match="English-only"):
        create_extractor("whisper", language="de")  # the bundled tiny.en
    create_extractor("whisper", language="de", model="small")  # a multilingual model: accepted (not loaded)
    create_extractor("whisper", language=None, model="small")
    f = tmp_path / "a.wav"
    sf.write(f, np.zeros(1600, np.float32), 16000)
    assert main(["extract", str(f), "--language", "zz", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'zz' is not a Whisper language code" in err
    assert not (tmp_path / "out").exists()
