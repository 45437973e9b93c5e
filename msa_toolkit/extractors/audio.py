"""Audio extractors: openSMILE LLDs (default), librosa descriptors, wav2vec2/HuBERT hidden states.

Every extractor takes a mono float32 waveform and returns a
:class:`~msa_toolkit.features.FeatureSequence` with one row per frame, the time
of each frame's centre in seconds, and (where columns have meaning) one name
per column.

- ``"opensmile"``: eGeMAPSv02 low-level descriptors (25-d, 100 frames/s), or
  ComParE_2016 LLDs (65-d) with ``feature_set="ComParE_2016"``.
- ``"librosa"``: MFCCs, fundamental frequency (YIN, or probabilistic YIN),
  RMS energy and zero-crossing rate at 100 frames/s.
- ``"wav2vec2"``: hidden states of any transformers audio encoder loaded from a
  local folder (wav2vec2, HuBERT, WavLM: ``AutoModel``), 50 frames/s for the
  usual convolutional front end. No such weights ship with the toolkit: pass
  ``model=/path/to/folder``. Long audio is encoded in ``chunk_seconds`` windows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from ..errors import ModelLoadError
from ..features import FeatureSequence
from ._versions import package_version
from .base import AudioExtractor, register_extractor

#: openSMILE LLD sets this extractor supports, with their column counts
OPENSMILE_SETS: Mapping[str, int] = {"eGeMAPSv02": 25, "ComParE_2016": 65}
#: column names of each LLD set (openSMILE 2.x), so describing the extractor (its FeatureSpec, the cache
#: key) needs no ``import opensmile``; checked against openSMILE's own names when it loads
OPENSMILE_NAMES: Mapping[str, tuple[str, ...]] = {
    "eGeMAPSv02": (
        "Loudness_sma3", "alphaRatio_sma3", "hammarbergIndex_sma3", "slope0-500_sma3", "slope500-1500_sma3",
        "spectralFlux_sma3", "mfcc1_sma3", "mfcc2_sma3", "mfcc3_sma3", "mfcc4_sma3", "F0semitoneFrom27.5Hz_sma3nz",
        "jitterLocal_sma3nz", "shimmerLocaldB_sma3nz", "HNRdBACF_sma3nz", "logRelF0-H1-H2_sma3nz",
        "logRelF0-H1-A3_sma3nz", "F1frequency_sma3nz", "F1bandwidth_sma3nz", "F1amplitudeLogRelF0_sma3nz",
        "F2frequency_sma3nz", "F2bandwidth_sma3nz", "F2amplitudeLogRelF0_sma3nz", "F3frequency_sma3nz",
        "F3bandwidth_sma3nz", "F3amplitudeLogRelF0_sma3nz"),
    "ComParE_2016": (
        "F0final_sma", "voicingFinalUnclipped_sma", "jitterLocal_sma", "jitterDDP_sma", "shimmerLocal_sma",
        "logHNR_sma", "audspec_lengthL1norm_sma", "audspecRasta_lengthL1norm_sma", "pcm_RMSenergy_sma",
        "pcm_zcr_sma", *(f"audSpec_Rfilt_sma[{i}]" for i in range(26)), "pcm_fftMag_fband250-650_sma",
        "pcm_fftMag_fband1000-4000_sma", "pcm_fftMag_spectralRollOff25.0_sma", "pcm_fftMag_spectralRollOff50.0_sma",
        "pcm_fftMag_spectralRollOff75.0_sma", "pcm_fftMag_spectralRollOff90.0_sma", "pcm_fftMag_spectralFlux_sma",
        "pcm_fftMag_spectralCentroid_sma", "pcm_fftMag_spectralEntropy_sma", "pcm_fftMag_spectralVariance_sma",
        "pcm_fftMag_spectralSkewness_sma", "pcm_fftMag_spectralKurtosis_sma", "pcm_fftMag_spectralSlope_sma",
        "pcm_fftMag_psySharpness_sma", "pcm_fftMag_spectralHarmonicity_sma",
        *(f"mfcc_sma[{i}]" for i in range(1, 15))),
}
#: openSMILE major version the OPENSMILE_NAMES table describes
OPENSMILE_NAMES_MAJOR = "2"
#: openSMILE LLD hop: 10 ms
OPENSMILE_FRAME_RATE = 100.0
#: audio context given to each openSMILE chunk on both sides, seconds (covers windows and smoothing)
OPENSMILE_CONTEXT_S = 1.0


def _check_wave(waveform: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(waveform, dtype=np.float32).reshape(-1)
    if not np.isfinite(x).all():
        raise ValueError("waveform contains NaN or infinite samples")
    return x


@register_extractor
class OpenSmileExtractor(AudioExtractor):
    """openSMILE low-level descriptors (eGeMAPSv02 by default)."""

    name: ClassVar[str] = "opensmile"
    version: ClassVar[str] = "1"
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        # "eGeMAPSv02" (25 LLDs) or "ComParE_2016" (65 LLDs)
        "feature_set": "eGeMAPSv02",
        # audio per openSMILE call in seconds (bounds memory on long files; each call also sees
        # OPENSMILE_CONTEXT_S of audio either side, so only frames near chunk edges can differ slightly)
        "chunk_seconds": 300.0,
    }

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.params["feature_set"] not in OPENSMILE_SETS:
            raise ValueError(f"feature_set must be one of {sorted(OPENSMILE_SETS)}, got {self.params['feature_set']!r}")
        self._smile = None

    def _get_smile(self):
        if self._smile is None:
            import opensmile

            smile = opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, self.params["feature_set"]),
                                    feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
            table = self._table_names()
            if table is not None and tuple(smile.feature_names) != table:  # the table no longer matches openSMILE
                raise ModelLoadError(f"openSMILE {package_version('opensmile')} names the "
                                     f"{self.params['feature_set']} columns differently from OPENSMILE_NAMES")
            self._smile = smile
        return self._smile

    def _load(self) -> None:
        self._get_smile()

    @property
    def dim(self) -> int:
        return OPENSMILE_SETS[self.params["feature_set"]]

    @property
    def frame_rate(self) -> float:
        return OPENSMILE_FRAME_RATE

    def _table_names(self) -> tuple[str, ...] | None:
        """OPENSMILE_NAMES of this feature set when the table describes the installed openSMILE, else None."""
        if package_version("opensmile").split(".")[0] != OPENSMILE_NAMES_MAJOR:
            return None
        return OPENSMILE_NAMES.get(self.params["feature_set"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        # the table needs no ``import opensmile``; an openSMILE it does not describe is asked itself
        table = self._table_names()
        return table if table is not None else tuple(self._get_smile().feature_names)

    def library_versions(self) -> str:
        return f"opensmile{package_version('opensmile')}"

    def extract(self, waveform: np.ndarray, sample_rate: int) -> FeatureSequence:
        x = _check_wave(waveform)
        smile = self._get_smile()
        names = list(smile.feature_names)
        if x.size < int(0.06 * sample_rate):  # shorter than the longest LLD window
            return FeatureSequence.empty(self.dim, names)
        hop = sample_rate / OPENSMILE_FRAME_RATE
        # chunk and context lengths on the 10 ms frame grid, so every chunk's frames sit on the global grid
        chunk = int(round(float(self.params["chunk_seconds"]) * OPENSMILE_FRAME_RATE) * hop)
        ctx = int(round(OPENSMILE_CONTEXT_S * OPENSMILE_FRAME_RATE) * hop)
        if chunk <= 0 or x.size <= chunk + ctx:
            values, times = self._run(smile, x, sample_rate, 0)
        else:
            parts_v, parts_t = [], []
            for c in range(0, x.size, chunk):
                a, b = max(0, c - ctx), min(x.size, c + chunk + ctx)
                v, t = self._run(smile, x[a:b], sample_rate, a)
                lo, hi = c / sample_rate, (c + chunk) / sample_rate if c + chunk < x.size else np.inf
                keep = (t >= lo - 1e-6) & (t < hi - 1e-6)
                parts_v.append(v[keep])
                parts_t.append(t[keep])
            values, times = np.concatenate(parts_v), np.concatenate(parts_t)
        return FeatureSequence(values, times, np.ones(len(values), bool), names)

    @staticmethod
    def _run(smile, x: np.ndarray, sample_rate: int, offset: int) -> tuple[np.ndarray, np.ndarray]:
        """LLDs of one stretch of audio starting at sample ``offset``: values and frame-centre times."""
        df = smile.process_signal(x, sample_rate)
        start = df.index.get_level_values("start").total_seconds().to_numpy()
        end = df.index.get_level_values("end").total_seconds().to_numpy()
        values = np.nan_to_num(df.to_numpy(dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return values, (start + end) / 2 + offset / sample_rate


@register_extractor
class LibrosaExtractor(AudioExtractor):
    """MFCCs + F0 + RMS energy + zero-crossing rate with librosa, 100 frames/s by default."""

    name: ClassVar[str] = "librosa"
    version: ClassVar[str] = "1"
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        # number of MFCCs
        "n_mfcc": 13,
        # "yin" (fast) or "pyin" (probabilistic, voicing-aware, much slower); unvoiced F0 is 0
        "pitch": "yin",
        # F0 search range in Hz
        "fmin": 65.0,
        "fmax": 500.0,
        # analysis window and hop in seconds
        "win_seconds": 0.025,
        "hop_seconds": 0.01,
    }

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.params["pitch"] not in ("yin", "pyin"):
            raise ValueError(f"pitch must be 'yin' or 'pyin', got {self.params['pitch']!r}")

    def _load(self) -> None:
        # numba (used by librosa) caches compiled code next to the package unless told otherwise
        os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "msa_toolkit",
                                                              "numba"))
        import librosa  # noqa: F401

    @property
    def dim(self) -> int:
        return int(self.params["n_mfcc"]) + 3

    @property
    def frame_rate(self) -> float:
        return 1.0 / float(self.params["hop_seconds"])

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f"mfcc_{i + 1}" for i in range(int(self.params["n_mfcc"]))) + ("f0_hz", "rms", "zcr")

    def library_versions(self) -> str:
        return f"librosa{package_version('librosa')}"

    def extract(self, waveform: np.ndarray, sample_rate: int) -> FeatureSequence:
        self.load()
        import librosa

        p = self.params
        x = _check_wave(waveform)
        hop = int(round(p["hop_seconds"] * sample_rate))
        win = int(round(p["win_seconds"] * sample_rate))
        n_fft = 1 << (win - 1).bit_length()
        # the pitch trackers need a frame of at least two periods of fmin
        pitch_frame = max(n_fft, 1 << (int(np.ceil(2.2 * sample_rate / p["fmin"])) - 1).bit_length())
        if x.size < pitch_frame:
            return FeatureSequence.empty(self.dim, list(self.feature_names))
        mfcc = librosa.feature.mfcc(y=x, sr=sample_rate, n_mfcc=int(p["n_mfcc"]), n_fft=n_fft, hop_length=hop,
                                    win_length=win)
        rms = librosa.feature.rms(y=x, frame_length=n_fft, hop_length=hop)[0]
        zcr = librosa.feature.zero_crossing_rate(x, frame_length=n_fft, hop_length=hop)[0]
        if p["pitch"] == "pyin":
            f0, voiced, _ = librosa.pyin(x, fmin=p["fmin"], fmax=p["fmax"], sr=sample_rate, frame_length=pitch_frame,
                                         hop_length=hop)
            f0 = np.where(voiced, f0, 0.0)
        else:
            f0 = librosa.yin(x, fmin=p["fmin"], fmax=p["fmax"], sr=sample_rate, frame_length=pitch_frame,
                             hop_length=hop)
        t = min(mfcc.shape[1], len(rms), len(zcr), len(f0))
        values = np.concatenate([mfcc[:, :t].T, np.nan_to_num(f0[:t])[:, None], rms[:t, None], zcr[:t, None]], axis=1)
        # librosa centres frames: frame i is centred on sample i * hop
        times = np.arange(t, dtype=np.float64) * hop / sample_rate
        return FeatureSequence(values.astype(np.float32), times, np.ones(t, bool), list(self.feature_names))


@register_extractor
class Wav2Vec2Extractor(AudioExtractor):
    """Hidden states of a transformers speech encoder (wav2vec2, HuBERT, WavLM) from a local folder."""

    name: ClassVar[str] = "wav2vec2"
    version: ClassVar[str] = "1"
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        # local folder (or a Hugging Face id already in the local cache) of the encoder
        "model": None,
        # which hidden layer to output (index into hidden_states; -1 = last)
        "layer": -1,
        # zero-mean unit-variance input normalisation (None = follow the folder's preprocessor config)
        "normalize": None,
        # audio per forward pass in seconds (bounds memory on long files); windows do not overlap
        "chunk_seconds": 20.0,
        # torch device (runtime only)
        "device": "cpu",
    }
    RUNTIME_PARAMS: ClassVar[frozenset[str]] = frozenset({"device"})

    def __init__(self, **params: Any):
        super().__init__(**params)
        model = self.params["model"]
        if not model:
            raise ValueError("wav2vec2 needs model=<local folder>: no wav2vec2/HuBERT weights ship with the toolkit")
        p = Path(os.path.expanduser(str(model)))
        if p.exists() and not (p / "config.json").is_file():
            raise ModelLoadError(f"wav2vec2 model folder {p} has no config.json")
        self._path = str(p.resolve()) if p.exists() else str(model)
        self._config = None
        self._model = None

    def _load_config(self):
        if self._config is None:
            from .text import _quiet_transformers

            _quiet_transformers()
            from transformers import AutoConfig

            try:
                self._config = AutoConfig.from_pretrained(self._path, local_files_only=True)
            except Exception as e:
                raise ModelLoadError(f"cannot load audio model {self.params['model']!r} offline "
                                     f"({type(e).__name__}: {e}); pass a local folder") from e
        return self._config

    def _load(self) -> None:
        import torch
        from transformers import AutoModel

        self._load_config()
        try:
            self._model = AutoModel.from_pretrained(self._path, local_files_only=True)
        except Exception as e:
            raise ModelLoadError(f"cannot load audio model {self.params['model']!r} offline "
                                 f"({type(e).__name__}: {e}); pass a local folder") from e
        self._model.eval().to(torch.device(self.params["device"]))
        if self.params["normalize"] is None:
            pre = Path(self._path) / "preprocessor_config.json"
            norm = True
            if pre.is_file():
                import json

                norm = bool(json.loads(pre.read_text()).get("do_normalize", True))
            self._normalize = norm
        else:
            self._normalize = bool(self.params["normalize"])

    def _config_value(self, name: str, default: Any = None) -> Any:
        """One model config entry: from a local folder's config.json as JSON (no transformers import)
        when it has it, else from the transformers config."""
        from .text import local_model_config

        raw = local_model_config(self._path)
        if raw is not None and name in raw:
            return raw[name]
        return getattr(self._load_config(), name, default)

    @property
    def dim(self) -> int:
        return int(self._config_value("hidden_size"))

    @property
    def _hop_and_field(self) -> tuple[int, int]:
        strides = list(self._config_value("conv_stride", [5, 2, 2, 2, 2, 2, 2]))
        kernels = list(self._config_value("conv_kernel", [10, 3, 3, 3, 3, 2, 2]))
        hop = int(np.prod(strides))
        rf = 1
        for k, s in zip(reversed(kernels), reversed(strides)):
            rf = (rf - 1) * s + k
        return hop, rf

    @property
    def frame_rate(self) -> float:
        return 16000.0 / self._hop_and_field[0]

    def library_versions(self) -> str:
        return f"transformers{package_version('transformers').split('.')[0]}"

    def extract(self, waveform: np.ndarray, sample_rate: int) -> FeatureSequence:
        import torch

        if sample_rate != 16000:
            raise ValueError(f"wav2vec2 models expect 16 kHz audio, got {sample_rate} Hz")
        self.load()
        x = _check_wave(waveform)
        hop, rf = self._hop_and_field
        chunk = max(rf, int(float(self.params["chunk_seconds"]) * sample_rate) // hop * hop)
        outs: list[np.ndarray] = []
        times_l: list[np.ndarray] = []
        for c in range(0, x.size, chunk):
            seg = x[c:c + chunk]
            if seg.size < rf:
                break
            if self._normalize:
                seg = (seg - seg.mean()) / np.sqrt(seg.var() + 1e-7)
            with torch.inference_mode():
                inp = torch.from_numpy(np.ascontiguousarray(seg))[None].to(self.params["device"])
                res = self._model(inp, output_hidden_states=True)
            h = res.hidden_states[int(self.params["layer"])][0].float().cpu().numpy()
            outs.append(h)
            # frame i of a window starting at sample c covers [c + i*hop, c + i*hop + rf): time = its centre
            times_l.append((c + np.arange(len(h)) * hop + rf / 2) / sample_rate)
        if not outs:
            return FeatureSequence.empty(self.dim)
        values = np.concatenate(outs, axis=0)
        times = np.concatenate(times_l)
        return FeatureSequence(values, times, np.ones(len(values), bool))
