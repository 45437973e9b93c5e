"""The extraction pipeline: media files (or plain texts) -> cached FeatureBundles.

Per file: probe and decode once (the 16 kHz waveform is shared by ASR and the
acoustic extractor; frames are streamed once to the visual extractor), run the
configured extractors, optionally align to words, and store the bundle in the
content-addressed cache (:mod:`msa_toolkit.cache`). ``out_dir`` receives a copy
of every bundle (``<name>.safetensors`` + ``<name>.json``), a ``manifest.json``
and, when something failed, ``errors.json`` / ``errors.csv``.

One bad file never stops a run: its failure is recorded with the stage it
failed in. Only a configuration problem that affects every file (an unknown
extractor, a model that cannot be loaded) raises.

    from msa_toolkit.pipeline import ExtractConfig, extract
    res = extract(["clips/"], out_dir="features", config=ExtractConfig(vision=None))
    for item in res.items: print(item.name, item.bundle_path)
    for f in res.failures: print(f.path, f.stage, f.message)
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from . import __version__
from .cache import FeatureCache, cache_key, hash_file, hash_text
from .errors import ExtractionError, MediaError, ModelLoadError, MSAError, SpecMismatchError
from .features import FeatureBundle, FeatureSequence, Transcript, atomic_write
from .spec import FeatureSpec

#: pipeline stages, in order; a Failure names one of them
STAGES: tuple[str, ...] = ("input", "decode", "asr", "text", "audio", "vision", "align", "save", "worker")
#: sample rate every audio extractor and ASR receive
SAMPLE_RATE = 16_000
#: name of the manifest written to out_dir (``manifest.shard-<i>-of-<n>.json`` for a shard)
MANIFEST_NAME = "manifest.json"
#: failure reports written to out_dir when something failed
ERRORS_JSON = "errors.json"
ERRORS_CSV = "errors.csv"
#: extensions a user transcript may have (plain text, or a Transcript json with word times)
TRANSCRIPT_EXTENSIONS = (".txt", ".json")
#: texts per chunk handed to the text encoder by extract_texts (each chunk is then cached)
TEXT_CHUNK = 256


class ExtractConfigError(MSAError):
    """The extraction configuration is invalid (unknown extractor, bad parameter, bad shard)."""


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExtractConfig:
    """Which extractor runs for each stage, with its parameters (None disables a stage)."""

    # speech recogniser ("whisper") or None (then text needs user transcripts)
    asr: str | None = "whisper"
    # parameters of the speech recogniser, e.g. {"model": "tiny.en", "vad_filter": True}
    asr_params: Mapping[str, Any] = field(default_factory=dict)
    # text encoder ("minilm", "transformer") or None
    text: str | None = "minilm"
    # parameters of the text encoder, e.g. {"model": "bert-base-uncased", "max_length": 128}
    text_params: Mapping[str, Any] = field(default_factory=dict)
    # acoustic extractor ("opensmile", "librosa", "wav2vec2") or None
    audio: str | None = "opensmile"
    # parameters of the acoustic extractor, e.g. {"feature_set": "ComParE_2016"}
    audio_params: Mapping[str, Any] = field(default_factory=dict)
    # visual extractor ("mediapipe_face") or None
    vision: str | None = "mediapipe_face"
    # parameters of the visual extractor, e.g. {"fps": 10}
    vision_params: Mapping[str, Any] = field(default_factory=dict)
    # "none" (native frame rates) or "words" (audio/vision/text averaged per transcript word)
    align: str = "none"

    def __post_init__(self) -> None:
        if self.align not in ("none", "words"):
            raise ExtractConfigError(f"align must be 'none' or 'words', got {self.align!r}")
        if self.align == "words" and self.asr is None and self.text is None:
            raise ExtractConfigError("align='words' needs word timings: enable asr")

    # -- stages ------------------------------------------------------------------------
    def stages(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Enabled stages: modality -> (extractor name, params), in pipeline order."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        for mod, name, params in (("asr", self.asr, self.asr_params), ("text", self.text, self.text_params),
                                  ("audio", self.audio, self.audio_params),
                                  ("vision", self.vision, self.vision_params)):
            if name:
                out[mod] = (name, dict(params))
        return out

    def create_extractors(self, modalities: Iterable[str] | None = None) -> dict[str, Any]:
        """One (not yet loaded) extractor per enabled stage."""
        from .extractors.base import get_extractor_class

        wanted = set(modalities) if modalities is not None else None
        out: dict[str, Any] = {}
        for mod, (name, params) in self.stages().items():
            if wanted is not None and mod not in wanted:
                continue
            try:
                cls = get_extractor_class(name)
            except KeyError as e:
                raise ExtractConfigError(f"{mod}: {e.args[0]}") from None
            if cls.modality != mod:
                raise ExtractConfigError(f"{mod}: extractor {name!r} is a {cls.modality!r} extractor")
            try:
                out[mod] = cls(**params)
            except ValueError as e:
                raise ExtractConfigError(f"{mod}: {e}") from None
        return out

    def build_spec(self, modalities: Iterable[str] | None = None) -> FeatureSpec:
        """The FeatureSpec this configuration produces (optionally only some stages)."""
        exs = self.create_extractors(modalities)
        return _spec_of(exs.values(), self.align)

    @classmethod
    def from_spec(cls, spec: FeatureSpec) -> "ExtractConfig":
        """The configuration that reproduces ``spec`` on this machine.

        Raises :class:`SpecMismatchError` naming what cannot be reproduced:
        precomputed features (non-empty ``origin``), an extractor unknown here,
        a model that cannot be loaded offline, or a version/dim that differs.
        """
        if spec.origin:
            raise SpecMismatchError(
                f"features of origin {dict(spec.origin)} were not produced by this toolkit's extractors "
                "and cannot be re-extracted from media")
        kw: dict[str, Any] = {"asr": None, "text": None, "audio": None, "vision": None, "align": spec.alignment}
        for e in spec.extractors:
            if e.modality not in ("asr", "text", "audio", "vision"):
                raise SpecMismatchError(f"unknown modality {e.modality!r} in FeatureSpec")
            kw[e.modality] = e.name
            kw[f"{e.modality}_params"] = dict(e.params)
        try:
            cfg = cls(**kw)
            here = cfg.build_spec()
        except (ExtractConfigError, ModelLoadError) as e:
            raise SpecMismatchError(f"cannot reproduce the FeatureSpec here: {e}") from None
        here.require_compatible(spec, what="extraction on this machine")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(self).items()}


def _spec_of(extractors: Iterable[Any], alignment: str) -> FeatureSpec:
    """FeatureSpec of extractors, in the canonical order (by modality) its JSON form uses."""
    return FeatureSpec(tuple(sorted((e.spec for e in extractors), key=lambda s: s.modality)), alignment=alignment)


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Failure:
    """One file that could not be processed."""

    # the input path
    path: str
    # the stage that failed (one of STAGES)
    stage: str
    # what went wrong, readable by users
    message: str


@dataclass(frozen=True)
class FileResult:
    """One file that was processed (or found in the cache)."""

    # the input path
    path: str
    # output name (bundle files are <name>.safetensors / <name>.json)
    name: str
    # stem of the stored bundle: in out_dir when given, else the cache entry
    bundle_path: str
    # cache key (content hash + spec fingerprint)
    key: str
    # True when nothing was computed (cache hit)
    cached: bool
    # wall time spent on this file in seconds (hashing + extraction or cache copy)
    seconds: float
    # media duration in seconds (from the bundle meta)
    duration: float | None = None
    # number of transcript words
    n_words: int = 0

    def load(self) -> FeatureBundle:
        return FeatureBundle.load(self.bundle_path)


@dataclass
class ExtractResult:
    """What :func:`extract` did: processed files, failures, the FeatureSpec and where things went."""

    # the FeatureSpec every bundle was extracted with
    spec: FeatureSpec
    # processed files, sorted by path
    items: list[FileResult] = field(default_factory=list)
    # files that failed, sorted by path
    failures: list[Failure] = field(default_factory=list)
    # manifest path (None without out_dir)
    manifest_path: Path | None = None
    # total wall time in seconds
    seconds: float = 0.0

    def __iter__(self) -> Iterator[FileResult]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_cached(self) -> int:
        return sum(1 for i in self.items if i.cached)

    def bundles(self) -> dict[str, FeatureBundle]:
        """Load every bundle, keyed by output name."""
        return {i.name: i.load() for i in self.items}


# ---------------------------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------------------------
def _media_extensions() -> frozenset[str]:
    from .media import MEDIA_EXTENSIONS

    return frozenset(e.lower() if e.startswith(".") else "." + e.lower() for e in MEDIA_EXTENSIONS)


def collect_files(paths: Iterable[str | os.PathLike]) -> tuple[list[tuple[Path, str]], list[Failure]]:
    """Expand files and folders (recursively, media extensions only) to ``(path, name)`` pairs.

    Names are file stems; files inside a given folder are named by their path relative
    to it (``sub__clip``) so same-named clips in different folders do not collide.
    Missing paths become "input" failures. Sorted by path, duplicates removed.
    """
    exts = _media_extensions()
    found: dict[Path, str] = {}
    failures: list[Failure] = []
    for p in paths:
        p = Path(p).expanduser()
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in exts and not f.name.startswith("."):
                    rel = f.relative_to(p).with_suffix("")
                    found.setdefault(f.resolve(), "__".join(rel.parts))
        elif p.is_file():
            found.setdefault(p.resolve(), p.stem)
        else:
            failures.append(Failure(str(p), "input", "no such file or directory"))
    items = sorted(found.items(), key=lambda kv: str(kv[0]))
    # disambiguate remaining collisions (same stem passed as separate files)
    seen: dict[str, int] = {}
    out: list[tuple[Path, str]] = []
    for path, name in items:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append((path, name if n == 0 else f"{name}__{n}"))
    return out, failures


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` (0-based i) -> (i, n); validates 0 <= i < n."""
    if shard is None:
        return None
    if isinstance(shard, str):
        try:
            i_s, n_s = shard.split("/")
            i, n = int(i_s), int(n_s)
        except ValueError:
            raise ExtractConfigError(f"shard must look like 'i/n' (e.g. 0/4), got {shard!r}") from None
    else:
        i, n = shard
    if n < 1 or not 0 <= i < n:
        raise ExtractConfigError(f"shard index must satisfy 0 <= i < n, got {i}/{n}")
    return i, n


def select_shard(files: Sequence[tuple[Path, str]], shard: tuple[int, int] | None) -> list[tuple[Path, str]]:
    """Files of shard ``i`` of ``n``: every n-th file of the path-sorted list, starting at i."""
    files = sorted(files, key=lambda f: str(f[0]))
    if shard is None:
        return list(files)
    i, n = shard
    return files[i::n]


def _read_user_transcript(p: Path) -> Transcript:
    if p.suffix.lower() == ".json":
        d = json.loads(p.read_text(encoding="utf-8"))
        if isinstance(d, str):
            return Transcript.from_text(d)
        tr = Transcript.from_dict(d) if "words" in d else Transcript.from_text(str(d.get("text", "")))
        return replace(tr, source="user")
    return Transcript.from_text(p.read_text(encoding="utf-8"))


def find_user_transcript(path: Path, name: str,
                         transcripts: str | os.PathLike | Mapping[str, Any] | None) -> Transcript | None:
    """The transcript the user supplied for ``path``, if any.

    ``transcripts`` may be a folder (``<name>.txt``/``.json`` or ``<stem>.txt``/``.json``
    inside it), a mapping from path, name or stem to text (or Transcript), or None; in
    every case a sidecar ``clip.txt`` next to ``clip.mp4`` is used when nothing else is.
    """
    if isinstance(transcripts, Mapping):
        for k in (str(path), name, path.stem, path.name):
            if k in transcripts:
                v = transcripts[k]
                return v if isinstance(v, Transcript) else Transcript.from_text(str(v))
    elif transcripts is not None:
        folder = Path(transcripts)
        for stem in dict.fromkeys((name, path.stem)):
            for ext in TRANSCRIPT_EXTENSIONS:
                cand = folder / f"{stem}{ext}"
                if cand.is_file():
                    return _read_user_transcript(cand)
    side = path.with_suffix(".txt")
    if side.is_file():
        return _read_user_transcript(side)
    return None


# ---------------------------------------------------------------------------------------------
# per-file work
# ---------------------------------------------------------------------------------------------
class _Runner:
    """Loaded extractors for one configuration; runs every stage on one file."""

    def __init__(self, config: ExtractConfig):
        self.config = config
        self.extractors = config.create_extractors()
        self.spec = _spec_of(self.extractors.values(), config.align)

    def load(self) -> None:
        for e in self.extractors.values():
            e.load()

    def run(self, path: Path, user_transcript: Transcript | None = None,
            on_stage: Callable[[str], None] | None = None) -> FeatureBundle:
        """All stages on one file; ``on_stage(name)`` is called as each stage starts (progress display)."""
        cfg, ex = self.config, self.extractors
        from . import media

        note = on_stage or (lambda _stage_name: None)
        note("decode")

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        try:
            info = media.probe(path)
        except MediaError as e:
            raise ExtractionError(path, "decode", e.cause) from None
        except Exception as e:
            raise ExtractionError(path, "decode", f"{type(e).__name__}: {e}") from None
        has_audio, has_video = bool(info.has_audio), bool(info.has_video)
        need_asr = "asr" in ex and user_transcript is None
        need_audio = need_asr or "audio" in ex
        if "text" in ex and "asr" not in ex and user_transcript is None:
            raise ExtractionError(path, "text", "text features need a transcript: enable asr or supply one "
                                                "(sidecar .txt next to the file, or transcripts=...)")
        if "vision" in ex and not has_video:  # checked first: no point decoding audio for a file that will fail
            raise ExtractionError(path, "vision", "the file has no video stream (for audio-only files use "
                                                  "--vision none / ExtractConfig(vision=None))")
        wave = None
        if need_audio:
            if not has_audio:
                raise ExtractionError(path, "asr" if need_asr else "audio",
                                      "the file has no audio track (for video-only files disable the audio stages: "
                                      "--asr none --audio none with a transcript, or --text none)")
            wave = _stage(path, "decode", lambda: media.load_audio(path, sample_rate=SAMPLE_RATE))
        timings["decode"] = time.perf_counter() - t0

        sequences: dict[str, FeatureSequence] = {}
        arrays: dict[str, np.ndarray] = {}
        transcript: Transcript | None = user_transcript
        if need_asr:
            note("asr")
            t = time.perf_counter()
            transcript = _stage(path, "asr", lambda: ex["asr"].transcribe(wave, SAMPLE_RATE))
            timings["asr"] = time.perf_counter() - t
        if "text" in ex:
            note("text")
            t = time.perf_counter()
            seq, arr = _stage(path, "text", lambda: ex["text"].encode([transcript])[0])
            sequences["text"], arrays = seq, dict(arr)
            timings["text"] = time.perf_counter() - t
        if "audio" in ex:
            note("audio")
            t = time.perf_counter()
            sequences["audio"] = _stage(path, "audio", lambda: ex["audio"].extract(wave, SAMPLE_RATE))
            timings["audio"] = time.perf_counter() - t
        wave = None  # free the waveform before video decoding
        if "vision" in ex:
            note("vision")
            t = time.perf_counter()
            vis = ex["vision"]

            def run_vision() -> FeatureSequence:
                # frames are decoded at the extractor's rate, full resolution (it downscales for detection itself)
                return vis.extract(media.iter_frames(path, fps=vis.fps or None))

            sequences["vision"] = _stage(path, "vision", run_vision)
            timings["vision"] = time.perf_counter() - t
        if cfg.align == "words":
            t = time.perf_counter()
            sequences = _stage(path, "align", lambda: align_bundle(sequences, arrays, transcript, self.spec))
            timings["align"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        meta: dict[str, Any] = {
            "source": str(path),
            "duration": float(info.duration) if info.duration is not None else None,
            "has_audio": has_audio,
            "has_video": has_video,
            "speech_found": bool(transcript is not None and not transcript.is_empty),
            "n_words": len(transcript.words) if transcript is not None else 0,
            "transcript_source": transcript.source if transcript is not None else None,
            "timings": {k: round(v, 4) for k, v in timings.items()},
            "toolkit_version": __version__,
        }
        if "vision" in sequences:
            m = sequences["vision"].mask
            meta["face_ratio"] = float(m.mean()) if m.size else 0.0
        return FeatureBundle(self.spec, sequences, transcript if "asr" in ex or "text" in ex or transcript else None,
                             arrays, meta)


#: public name of a loaded extractor set (one per ExtractConfig), reusable across extract() calls
LoadedExtractors = _Runner


def load_extractors(config: ExtractConfig = ExtractConfig()) -> LoadedExtractors:
    """Create and load every extractor of ``config`` once, for reuse with ``extract(..., extractors=...)``."""
    runner = _Runner(config)
    runner.load()
    return runner


def _stage(path: Path, stage: str, fn):
    """Run one stage; any exception becomes an ExtractionError naming the stage."""
    try:
        return fn()
    except ExtractionError:
        raise
    except MediaError as e:
        raise ExtractionError(path, stage, e.cause) from None
    except ModelLoadError:
        raise
    except Exception as e:
        raise ExtractionError(path, stage, f"{type(e).__name__}: {e}") from None


def align_bundle(sequences: dict[str, FeatureSequence], arrays: Mapping[str, np.ndarray],
                 transcript: Transcript | None, spec: FeatureSpec) -> dict[str, FeatureSequence]:
    """Word-level versions of every sequence (see :mod:`msa_toolkit.align`)."""
    from .align import align_frames, pool_tokens

    if transcript is None:
        raise ValueError("word-level alignment needs a transcript")
    words = transcript.words
    out: dict[str, FeatureSequence] = {}
    for mod, seq in sequences.items():
        if mod == "text":
            out[mod] = pool_tokens(seq, arrays["text.word_index"], words)
        else:
            es = spec.get(mod)
            out[mod] = align_frames(seq, words, es.frame_rate if es else None)
    return out


def extract_file(path: str | os.PathLike, config: ExtractConfig = ExtractConfig(),
                 transcript: Transcript | str | None = None) -> FeatureBundle:
    """Extract one file without cache or output folder (raises ExtractionError on failure).

    ``transcript`` (text or Transcript) replaces ASR when given; otherwise a sidecar
    ``.txt`` next to the file is used when present.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise ExtractionError(p, "input", "no such file")
    if isinstance(transcript, str):
        transcript = Transcript.from_text(transcript)
    if transcript is None:
        transcript = find_user_transcript(p, p.stem, None)
    runner = _Runner(config)
    runner.load()
    bundle = runner.run(p, transcript)
    bundle.meta["sha256"] = hash_file(p)
    return bundle


# -- worker processes ---------------------------------------------------------------------------
_WORKER: _Runner | None = None


def _init_worker(config: ExtractConfig, env: dict[str, str]) -> None:
    global _WORKER
    os.environ.update(env)
    with contextlib.suppress(Exception):
        import torch

        torch.set_num_threads(max(1, int(env.get("MSA_WORKER_THREADS", "1"))))
    _WORKER = _Runner(config)
    _WORKER.load()


def _compute(runner: _Runner, path: Path, transcript: Transcript | None, key: str, sha: str,
             cache_root: str, on_stage: Callable[[str], None] | None = None) -> tuple[str, str | None, str | None]:
    """Extract and store one file in the cache. Returns ("ok", None, None) or ("fail", stage, message)."""
    try:
        bundle = runner.run(path, transcript, on_stage) if on_stage else runner.run(path, transcript)
    except ExtractionError as e:
        return "fail", e.stage, e.cause
    bundle.meta["sha256"] = sha
    try:
        FeatureCache(cache_root).put(key, bundle)
    except Exception as e:
        return "fail", "save", f"{type(e).__name__}: {e}"
    return "ok", None, None


def _worker_task(path: str, transcript: dict | None, key: str, sha: str, cache_root: str):
    assert _WORKER is not None
    tr = Transcript.from_dict(transcript) if transcript is not None else None
    return _compute(_WORKER, Path(path), tr, key, sha, cache_root)


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[current]}"),
                    console=Console(stderr=True), disable=not enabled, transient=False)


def _export(cache: FeatureCache, key: str, out_dir: Path, name: str, source: Path) -> Path:
    """Copy a cache entry to ``out_dir/<name>`` (atomic), with this file's path in its meta."""
    src = cache.stem(key)
    dst = out_dir / name
    st_dst = dst.with_suffix(".safetensors")

    def copy_st(tmp: str) -> None:
        os.unlink(tmp)
        try:
            os.link(src.with_suffix(".safetensors"), tmp)
        except OSError:
            shutil.copyfile(src.with_suffix(".safetensors"), tmp)

    atomic_write(st_dst, copy_st)
    header = json.loads(src.with_suffix(".json").read_text())
    header.setdefault("meta", {})["source"] = str(source)
    header["meta"]["name"] = name
    header["meta"]["cache_key"] = key
    atomic_write(dst.with_suffix(".json"), lambda p: Path(p).write_text(json.dumps(header, indent=1)))
    return dst


def _out_is_current(out_dir: Path, name: str, key: str) -> bool:
    js = (out_dir / name).with_suffix(".json")
    if not (js.is_file() and js.with_suffix(".safetensors").is_file()):
        return False
    try:
        return json.loads(js.read_text()).get("meta", {}).get("cache_key") == key
    except (OSError, json.JSONDecodeError):
        return False


def extract(paths: str | os.PathLike | Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None,
            config: ExtractConfig = ExtractConfig(), cache_dir: str | os.PathLike | None = None,
            workers: int = 1, shard: str | tuple[int, int] | None = None,
            transcripts: str | os.PathLike | Mapping[str, Any] | None = None, progress: bool = True,
            save_srt: bool = False, extractors: "LoadedExtractors | None" = None) -> ExtractResult:
    """Extract features from media files and folders (see the module docstring).

    Args:
        paths: files and/or folders (searched recursively for media extensions).
        out_dir: where to write ``<name>.safetensors``/``.json`` per file, ``manifest.json`` and
            the failure report; None keeps bundles in the cache only.
        config: which extractors run, with which parameters.
        cache_dir: the content-addressed cache (default ``$MSA_CACHE_DIR`` or ``~/.cache/msa_toolkit``).
        workers: processes (spawn); each loads the models once.
        shard: ``"i/n"`` to process only every n-th file of the sorted list, starting at i (0-based).
        transcripts: user transcripts replacing ASR: a folder of ``<name>.txt``/``.json`` or a mapping
            path/name/stem -> text. A sidecar ``clip.txt`` next to ``clip.mp4`` is always honoured.
        progress: show a rich progress bar on stderr.
        save_srt: also write ``<name>.srt`` subtitles to out_dir.
        extractors: already loaded extractors (:func:`load_extractors`) reused across calls, so a
            long-lived caller (e.g. a Predictor) loads Whisper and the encoders once; must match ``config``.
    """
    t_start = time.perf_counter()
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    shard_t = parse_shard(shard)
    files, failures = collect_files(paths)
    files = select_shard(files, shard_t)
    if workers < 1:
        raise ExtractConfigError(f"workers must be >= 1, got {workers}")
    if extractors is not None and extractors.config != config:
        raise ExtractConfigError("extract(): the loaded extractors were built for another ExtractConfig")
    runner = extractors if extractors is not None else _Runner(config)
    spec = runner.spec
    fingerprint = spec.fingerprint()
    cache = FeatureCache(cache_dir)
    out = Path(out_dir).expanduser() if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    items: list[FileResult] = []

    def finish(path: Path, name: str, key: str, cached: bool, started: float) -> None:
        stem = cache.stem(key)
        if out is not None:
            if not (cached and _out_is_current(out, name, key)):
                stem = _export(cache, key, out, name, path)
            else:
                stem = out / name
            if save_srt:
                hdr = json.loads(stem.with_suffix(".json").read_text())
                tr = hdr.get("transcript")
                if tr is not None:
                    atomic_write(stem.with_suffix(".srt"),
                                 lambda p: Path(p).write_text(Transcript.from_dict(tr).to_srt(), encoding="utf-8"))
        meta = json.loads(stem.with_suffix(".json").read_text()).get("meta", {})
        # computed files report their extraction time; cache hits the time to find and copy them
        seconds = time.perf_counter() - started if cached else float(meta.get("timings", {}).get("total", 0.0))
        items.append(FileResult(str(path), name, str(stem), key, cached, seconds,
                                meta.get("duration"), int(meta.get("n_words", 0))))

    with _progress(progress) as bar:
        task = bar.add_task("extract", total=len(files), current="")
        todo: list[tuple[Path, str, str, str, Transcript | None, float]] = []
        # pass 1: hash every file; cache hits finish at once
        for path, name in files:
            started = time.perf_counter()
            bar.update(task, current=name)
            try:
                sha = hash_file(path)
                tr = find_user_transcript(path, name, transcripts)
            except OSError as e:
                failures.append(Failure(str(path), "input", f"cannot read: {e}"))
                bar.advance(task)
                continue
            except (ValueError, KeyError) as e:
                failures.append(Failure(str(path), "input", f"bad user transcript: {e}"))
                bar.advance(task)
                continue
            key = cache_key(sha, fingerprint, hash_text(json.dumps(tr.to_dict(), sort_keys=True)) if tr else "")
            if cache.contains(key):
                try:
                    finish(path, name, key, True, started)
                    cache.hits += 1
                    bar.advance(task)
                    continue
                except (OSError, json.JSONDecodeError):
                    pass  # damaged entry: recompute
            todo.append((path, name, key, sha, tr, started))

        # pass 2: compute the misses, in this process or in worker processes
        def done(path, name, key, started, status) -> None:
            ok, stage, msg = status
            if ok == "ok":
                try:
                    finish(path, name, key, False, started)
                except OSError as e:
                    failures.append(Failure(str(path), "save", str(e)))
            else:
                failures.append(Failure(str(path), stage, msg))
            bar.advance(task)

        if todo and workers == 1:
            runner.load()
            for path, name, key, sha, tr, started in todo:
                bar.update(task, current=name)
                note = (lambda st, _n=name: bar.update(task, current=f"{_n}: {st}")) if progress else None
                done(path, name, key, started, _compute(runner, path, tr, key, sha, str(cache.root), note))
        elif todo:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            env = {k: v for k, v in os.environ.items() if k.startswith(("HF_", "TRANSFORMERS_", "NUMBA_", "OMP_",
                                                                         "MSA_"))}
            env.setdefault("MSA_WORKER_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
            with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=mp.get_context("spawn"),
                                     initializer=_init_worker, initargs=(config, env)) as pool:
                futs = {pool.submit(_worker_task, str(p), tr.to_dict() if tr else None, key, sha,
                                    str(cache.root)): (p, n, key, st) for p, n, key, sha, tr, st in todo}
                for fut in as_completed(futs):
                    p, n, key, st = futs[fut]
                    try:
                        status = fut.result()
                    except Exception as e:  # a worker died (e.g. out of memory) or failed to start
                        status = ("fail", "worker", f"worker process failed: {type(e).__name__}: {e}")
                    bar.update(task, current=n)
                    done(p, n, key, st, status)
        bar.update(task, current="done")

    items.sort(key=lambda i: i.path)
    failures.sort(key=lambda f: f.path)
    result = ExtractResult(spec, items, failures, None, time.perf_counter() - t_start)
    if out is not None:
        result.manifest_path = _write_reports(out, result, config, shard_t)
    return result


def _write_reports(out: Path, result: ExtractResult, config: ExtractConfig,
                   shard: tuple[int, int] | None) -> Path:
    suffix = f".shard-{shard[0]}-of-{shard[1]}" if shard else ""
    manifest = {
        "toolkit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "spec": result.spec.to_dict(),
        "config": config.to_dict(),
        "shard": list(shard) if shard else None,
        "files": [{"path": i.path, "name": i.name, "bundle": f"{i.name}.safetensors", "key": i.key,
                   "cached": i.cached, "duration": i.duration, "n_words": i.n_words} for i in result.items],
        "failures": [asdict(f) for f in result.failures],
    }
    mpath = out / f"manifest{suffix}.json"
    atomic_write(mpath, lambda p: Path(p).write_text(json.dumps(manifest, indent=1)))
    ej, ec = out / f"errors{suffix}.json", out / f"errors{suffix}.csv"
    if result.failures:
        atomic_write(ej, lambda p: Path(p).write_text(json.dumps([asdict(f) for f in result.failures], indent=1)))

        def write_csv(p: str) -> None:
            with open(p, "w", newline="", encoding="utf-8") as fh:
                w = csv.writer(fh)
                w.writerow(["path", "stage", "message"])
                for f in result.failures:
                    w.writerow([f.path, f.stage, f.message])

        atomic_write(ec, write_csv)
    else:
        for p in (ej, ec):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return mpath


# ---------------------------------------------------------------------------------------------
# text-only bundles
# ---------------------------------------------------------------------------------------------
def extract_texts(texts: Mapping[str, str], config: ExtractConfig = ExtractConfig(),
                  cache_dir: str | os.PathLike | None = None, progress: bool = True) -> dict[str, FeatureBundle]:
    """Text-only bundles for given texts (no media), keyed like ``texts``.

    Texts are batched through the text encoder and cached by hash of the text + the text
    FeatureSpec, so building a 22k-row label file twice encodes nothing the second time.
    Identical texts are encoded once. The spec holds only the text extractor; with
    ``config.align == "words"`` text is pooled per word (words = whitespace tokens).
    """
    if not config.text:
        raise ExtractConfigError("extract_texts needs a text extractor (config.text)")
    tcfg = replace(config, asr=None, audio=None, vision=None)
    exs = tcfg.create_extractors(["text"])
    enc = exs["text"]
    spec = _spec_of([enc], config.align)
    fingerprint = spec.fingerprint()
    cache = FeatureCache(cache_dir)
    norm = {k: " ".join(str(v).split()) for k, v in texts.items()}
    key_of = {k: cache_key(hash_text(t), fingerprint) for k, t in norm.items()}
    out: dict[str, FeatureBundle] = {}
    by_key: dict[str, FeatureBundle] = {}
    missing: dict[str, str] = {}  # key -> text
    with _progress(progress) as bar:
        task = bar.add_task("texts", total=len(norm), current="cache")
        for k, key in key_of.items():
            if key in by_key or key in missing:
                continue
            b = cache.get(key)
            if b is not None:
                by_key[key] = b
                bar.advance(task)
            else:
                missing[key] = norm[k]
        if missing:
            enc.load()
            # similar lengths together: little padding in every encoder batch
            keys = sorted(missing, key=lambda k: len(missing[k]))
            for c in range(0, len(keys), TEXT_CHUNK):
                chunk = keys[c:c + TEXT_CHUNK]
                trs = [Transcript.from_text(missing[key]) for key in chunk]
                bar.update(task, current="encoding")
                for key, tr, (seq, arr) in zip(chunk, trs, enc.encode(trs)):
                    seqs = {"text": seq}
                    if config.align == "words":
                        seqs = align_bundle(seqs, arr, tr, spec)
                    b = FeatureBundle(spec, seqs, tr, dict(arr),
                                      {"text_sha256": hash_text(missing[key]),
                                       "n_words": len(tr.words), "toolkit_version": __version__})
                    cache.put(key, b)
                    by_key[key] = b
                    bar.advance(task)
        bar.update(task, completed=len(norm), current="done")
    for k, key in key_of.items():
        out[k] = by_key[key]
    return out
