"""--device: the neural extractors' device parameters (checked with mocks on the CPU), the batched Whisper
pipeline on a GPU, and (marker ``gpu``) a real run on a CUDA device."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import typer

from msa_toolkit.errors import ExtractConfigError
from msa_toolkit.extraction import ExtractConfig
from msa_toolkit.extraction.runner import CUDA_COMPUTE_TYPE, LoadedExtractors, cuda_available, on_device


def test_on_device_moves_every_neural_extractor():
    cfg = on_device(ExtractConfig(audio="wav2vec2", audio_params={"model": "/nowhere"}), "cuda")
    assert cfg.asr_params["device"] == "cuda" and cfg.asr_params["compute_type"] == CUDA_COMPUTE_TYPE
    assert cfg.text_params["device"] == "cuda"
    assert cfg.audio_params == {"model": "/nowhere", "device": "cuda"}
    assert "device" not in cfg.vision_params  # MediaPipe has no GPU path here
    back = on_device(cfg, "cpu")
    assert back.asr_params["device"] == "cpu" and back.asr_params["compute_type"] == "int8"
    # an explicit compute type is kept
    assert on_device(ExtractConfig(asr_params={"compute_type": "int8_float16"}), "cuda").asr_params[
        "compute_type"] == "int8_float16"
    with pytest.raises(ExtractConfigError):
        on_device(ExtractConfig(), "tpu")


def test_device_is_a_runtime_parameter():
    cpu = LoadedExtractors(ExtractConfig())
    gpu = LoadedExtractors(on_device(ExtractConfig(), "cuda"))
    assert gpu.spec.fingerprint() == cpu.spec.fingerprint()
    assert gpu.extractors["asr"].params["device"] == "cuda" and gpu.extractors["text"].params["device"] == "cuda"


def test_auto_follows_ctranslate2(monkeypatch):
    monkeypatch.setattr("msa_toolkit.extraction.runner.cuda_available", lambda: False)
    assert on_device(ExtractConfig(), "auto").asr_params["device"] == "cpu"
    monkeypatch.setattr("msa_toolkit.extraction.runner.cuda_available", lambda: True)
    assert on_device(ExtractConfig(), "auto").text_params["device"] == "cuda"


def test_cli_device_flag():
    from msa_toolkit.cli._options import ExtractorFlags, extract_config

    assert extract_config(ExtractorFlags(device="cuda")).asr_params["device"] == "cuda"
    assert "device" not in extract_config(ExtractorFlags()).asr_params
    with pytest.raises(typer.BadParameter):
        extract_config(ExtractorFlags(device="gpu0"))


class _FakeWhisper:
    """Stands in for faster_whisper.WhisperModel: records how it was built and which decoder ran."""

    built: dict = {}

    def __init__(self, path, **kw):
        type(self).built = kw
        self.calls: list[tuple[str, float]] = []

    def transcribe(self, audio, **kw):
        self.calls.append(("sequential", len(audio) / 16000))
        return iter(()), types.SimpleNamespace(language="en")


class _FakeBatched:
    def __init__(self, model):
        self.model = model

    def transcribe(self, audio, batch_size, **kw):
        self.model.calls.append((f"batched{batch_size}", len(audio) / 16000))
        return iter(()), types.SimpleNamespace(language="en")


@pytest.fixture
def fake_faster_whisper(monkeypatch):
    mod = types.ModuleType("faster_whisper")
    mod.WhisperModel, mod.BatchedInferencePipeline = _FakeWhisper, _FakeBatched
    monkeypatch.setitem(sys.modules, "faster_whisper", mod)
    return mod


def _speechy(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)).astype(np.float32)


def test_whisper_on_cuda_gets_float16_and_batches_long_audio(fake_faster_whisper):
    cfg = on_device(ExtractConfig(text=None, audio=None, vision=None), "cuda")
    asr = LoadedExtractors(cfg).extractors["asr"]
    asr.transcribe(_speechy(10), 16000)
    assert _FakeWhisper.built["device"] == "cuda" and _FakeWhisper.built["compute_type"] == "float16"
    asr.transcribe(_speechy(70), 16000)
    assert asr._model.calls == [("sequential", 10.0), ("batched8", 70.0)]


def test_whisper_on_cpu_never_batches(fake_faster_whisper):
    asr = LoadedExtractors(ExtractConfig(text=None, audio=None, vision=None)).extractors["asr"]
    asr.transcribe(_speechy(70), 16000)
    assert _FakeWhisper.built["device"] == "cpu" and _FakeWhisper.built["compute_type"] == "int8"
    assert asr._model.calls == [("sequential", 70.0)]


@pytest.mark.gpu
def test_extract_on_a_gpu(assets_dir):
    if not cuda_available():
        pytest.skip("no CUDA device")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    clip = assets_dir / "speech_positive.mp4"
    cpu = LoadedExtractors(ExtractConfig(vision=None)).run(clip)
    gpu_runner = LoadedExtractors(on_device(ExtractConfig(vision=None), "cuda"))
    gpu = gpu_runner.run(clip)
    assert next(gpu_runner.extractors["text"]._model.parameters()).device.type == "cuda"
    assert gpu.transcript.text.lower().split()[:3] == cpu.transcript.text.lower().split()[:3]
    if gpu.transcript == cpu.transcript:  # same words: the text features match up to float rounding
        np.testing.assert_allclose(gpu.sequences["text"].values, cpu.sequences["text"].values, atol=1e-3)
    np.testing.assert_array_equal(gpu.sequences["audio"].values, cpu.sequences["audio"].values)
