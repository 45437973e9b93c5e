"""Missing and noisy modalities: the perturbations of ``msa robustness`` and of robustness training.

Every perturbation is a function ``Batch -> Batch`` applied after collation, in the model's input space (the
features as the model sees them: truncated and, when the checkpoint normalises, standardised with the training
split's statistics). Its random draws come from the sample ids and a seed only (:func:`sample_rng`), never from
the model, the batch composition or the order of the loader: the same seed gives every model the same masks,
and the uniform draw of a position is the same at every rate, so the masks are nested (a step dropped at rate
r is dropped at every rate above r). The definitions, with their sources, are in ``docs/robustness.md``.

* :func:`drop_steps` (protocol A, after MMSA's ``data_missing``): each valid step of each perturbed modality is
  kept iff its uniform draw exceeds the rate; dropped audio/vision frames and feature-only text rows become
  zeros, dropped text token ids the tokenizer's unknown token; when token ids exist the first and last valid
  token ([CLS]/[SEP]) are always kept. Masks are unchanged (MMSA keeps the attention mask).
* :func:`plan_removal` + :func:`remove_modalities` (protocol B, whole modalities): an exact fraction of the
  (sample, modality) entries of a split is removed, at least one modality kept per sample; a removed modality
  follows the absent-modality contract of :mod:`.batch` (zeros, all-False mask) for that sample.
* :func:`add_noise` (MultiBench-style): Gaussian noise of standard deviation ``p`` (in units of the training
  split's per-dimension standard deviation) on the valid steps of audio and vision; :func:`add_word_noise`:
  word-level typos and omissions at probability ``p`` on raw transcripts, re-tokenised (token-reading models).
* :class:`MissingAugment`: protocol-A drops on training batches, at a fixed rate or the LNLN-style schedule.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import MSAError
from ..spec import MODALITIES
from .batch import Batch

__all__ = ["DEFAULT_MASK_SEED", "sample_rng", "drop_steps", "plan_removal", "remove_modalities",
           "add_noise", "perturb_words", "add_word_noise", "MissingAugment", "model_unk_id", "load_tokenizer", "tokenizer_unk_id", "NOISE_MODALITIES"]

#: MMSA's ``missing_seed`` default (config_regression.json), the default mask seed of protocol A/B and noise
DEFAULT_MASK_SEED = 1111
#: the modalities Gaussian noise is added to (text is perturbed at the word level, not with Gaussian noise)
NOISE_MODALITIES = ("audio", "vision")
#: stream tags, so that the draws of different protocols never share a random stream
_STREAM = {"A": 1, "B": 2, "noise": 3, "train": 4, "lnln": 5, "words": 6}


def _id_words(sample_id: str) -> list[int]:
    digest = hashlib.sha256(str(sample_id).encode()).digest()[:16]
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]


def sample_rng(seed: int, stream: str, sample_id: str, *keys: int) -> np.random.Generator:
    """The random generator of one sample: a function of the seed, the stream (protocol), the sample id and
    ``keys`` (e.g. the modality index, the epoch) only. Its draws are sequential, so the first ``n`` uniforms are
    the same whatever number is drawn (a batch padded to another length sees the same draws)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, _STREAM[stream], *map(int, keys),
                                                         *_id_words(sample_id)]))


def _uniforms(ids: Sequence[str], seed: int, stream: str, modality: str, length: int, *keys: int) -> torch.Tensor:
    """float64 [B, length]: the per-position uniform draws of each sample (:func:`sample_rng`)."""
    m = MODALITIES.index(modality)
    return torch.from_numpy(np.stack([sample_rng(seed, stream, i, m, *keys).random(length) for i in ids])
                            if len(ids) else np.zeros((0, length)))


def _token_mask(batch: Batch) -> torch.Tensor | None:
    """bool [B, Lt]: valid token positions (the text mask when tokens and text rows align, else non-padding ids)."""
    tokens = batch.text_tokens
    if tokens is None:
        return None
    if tokens.shape == batch.text_mask.shape:
        return batch.text_mask
    return tokens != 0


def _boundary(valid: torch.Tensor) -> torch.Tensor:
    """bool [B, L]: the first and the last valid position of each row ([CLS] and [SEP])."""
    out = torch.zeros_like(valid)
    n = valid.shape[1]
    any_ = valid.any(dim=1)
    idx = torch.arange(n, device=valid.device).expand_as(valid)
    first = torch.where(valid, idx, n).min(dim=1).values
    last = torch.where(valid, idx, -1).max(dim=1).values
    rows = torch.nonzero(any_).squeeze(1)
    out[rows, first[rows]] = True
    out[rows, last[rows]] = True
    return out


def _keep(u: torch.Tensor, rate: torch.Tensor | float) -> torch.Tensor:
    """Kept iff the draw exceeds the rate; a rate of 0 keeps every step (a draw of exactly 0.0 included)."""
    rate_t = torch.as_tensor(rate, dtype=u.dtype)
    if rate_t.dim() == 1:
        rate_t = rate_t[:, None]
    return (u > rate_t) | (rate_t <= 0)


def drop_steps(batch: Batch, rate: float | Mapping[str, torch.Tensor | float], seed: int = DEFAULT_MASK_SEED,
               modalities: Sequence[str] = MODALITIES, unk_id: int | None = None, stream: str = "A",
               keys: Sequence[int] = ()) -> Batch:
    """Protocol A on one batch (module docstring): each valid step kept iff its uniform draw > ``rate``.

    ``rate`` is one rate, or per modality a rate or a float tensor [B] of per-sample rates (the LNLN schedule).
    ``unk_id``: the token id dropped text tokens become; None leaves ``text_tokens`` as they are (a model that
    does not read token ids), the text features are zeroed either way. A rate of 0 returns the batch unchanged.
    """
    rates = {m: rate for m in modalities} if not isinstance(rate, Mapping) else dict(rate)
    kw: dict[str, torch.Tensor] = {}
    for m in modalities:
        r = rates.get(m, 0.0)
        if not torch.is_tensor(r) and float(r) <= 0:
            continue
        values, mask = batch.features(m)
        tokens_valid = _token_mask(batch) if m == "text" else None
        L = max(mask.shape[1], tokens_valid.shape[1] if tokens_valid is not None else 0)
        keep_all = _keep(_uniforms(batch.ids, seed, stream, m, L, *keys), r.cpu() if torch.is_tensor(r) else r)
        if tokens_valid is not None:  # [CLS] and [SEP] stay
            keep_all[:, :tokens_valid.shape[1]] |= _boundary(tokens_valid.cpu())
            tokens = batch.text_tokens
            drop_tok = tokens_valid & ~keep_all[:, :tokens.shape[1]].to(tokens.device)
            if unk_id is not None:
                kw["text_tokens"] = torch.where(drop_tok, torch.as_tensor(unk_id, dtype=tokens.dtype,
                                                                           device=tokens.device), tokens)
        keep = keep_all[:, :mask.shape[1]].to(values.device)
        kw[m] = values * (keep | ~mask).unsqueeze(-1).to(values.dtype)
    return replace(batch, **kw) if kw else batch


def plan_removal(ids: Sequence[str], modalities: Sequence[str], rate: float,
                 seed: int = DEFAULT_MASK_SEED) -> tuple[dict[str, frozenset[str]], float]:
    """Protocol B: which modalities each sample loses at ``rate``, and the rate realised.

    ``K = round(rate * N * M)`` of the ``N * M`` (sample, modality) entries are removed, at most ``N * (M - 1)``
    (one modality kept per sample: its protected modality, the one with the largest first draw); the entries
    removed are the ``K`` unprotected ones with the smallest second draw. Both draws come from the sample id and
    the seed, so the plan does not depend on the order of ``ids``, and a plan at a higher rate contains every
    removal of a lower one."""
    ids = list(ids)
    M = len(modalities)
    if not ids or M == 0 or rate <= 0:
        return {}, 0.0
    draws = np.stack([sample_rng(seed, "B", i).random(2 * len(MODALITIES)) for i in ids])
    cols = [MODALITIES.index(m) for m in modalities]
    protect_key, rank_key = draws[:, cols], draws[:, [len(MODALITIES) + c for c in cols]]
    protected = protect_key.argmax(axis=1)
    k = min(int(round(rate * len(ids) * M)), len(ids) * (M - 1))
    cand = [(rank_key[i, j], ids[i], j) for i in range(len(ids)) for j in range(M) if j != protected[i]]
    cand.sort(key=lambda t: (t[0], t[1], t[2]))
    plan: dict[str, set[str]] = {}
    for _, sid, j in cand[:k]:
        plan.setdefault(sid, set()).add(modalities[j])
    return {k_: frozenset(v) for k_, v in plan.items()}, k / (len(ids) * M)


def remove_modalities(batch: Batch, plan: Mapping[str, frozenset[str]]) -> Batch:
    """Protocol B on one batch: each sample's planned modalities zeroed and masked (the absent-modality contract
    of :mod:`.batch`, for that sample only; its token ids become padding)."""
    rows = {m: [i for i, sid in enumerate(batch.ids) if m in plan.get(sid, ())] for m in MODALITIES}
    kw: dict[str, torch.Tensor] = {}
    for m, idx in rows.items():
        if not idx:
            continue
        values, mask = batch.features(m)
        values, mask = values.clone(), mask.clone()
        values[idx] = 0
        mask[idx] = False
        kw[m], kw[f"{m}_mask"] = values, mask
        if m == "text" and batch.text_tokens is not None:
            tokens = batch.text_tokens.clone()
            tokens[idx] = 0
            kw["text_tokens"] = tokens
    return replace(batch, **kw) if kw else batch


def add_noise(batch: Batch, level: float, seed: int = DEFAULT_MASK_SEED,
              scale: Mapping[str, torch.Tensor | None] | None = None,
              modalities: Sequence[str] = NOISE_MODALITIES) -> Batch:
    """Gaussian noise of standard deviation ``level`` on the valid steps of ``modalities`` (padding stays 0).

    ``scale``: per modality the training split's per-dimension std [D] when the batch is in raw units (a
    checkpoint trained without normalisation), so that the noise is ``level`` standard deviations of the
    standardised feature; None (or a missing entry) for a batch already standardised."""
    if level <= 0:
        return batch
    kw: dict[str, torch.Tensor] = {}
    for m in modalities:
        values, mask = batch.features(m)
        if not mask.any():
            continue
        L, D = values.shape[1], values.shape[2]
        mi = MODALITIES.index(m)
        noise = torch.from_numpy(np.stack([sample_rng(seed, "noise", i, mi).standard_normal((L, D))
                                           for i in batch.ids])).to(values.dtype).to(values.device)
        s = (scale or {}).get(m)
        if s is not None:
            noise = noise * torch.as_tensor(s, dtype=values.dtype, device=values.device)
        kw[m] = values + level * noise * mask.unsqueeze(-1).to(values.dtype)
    return replace(batch, **kw) if kw else batch


def perturb_words(text: str, level: float, rng: np.random.Generator) -> str:
    """Word-level noise: each word is perturbed with probability ``level``; a perturbed word is omitted or,
    with equal probability, gets a typo: two different adjacent characters swapped (a word without such a pair,
    e.g. one character, is omitted)."""
    out = []
    for word in text.split():
        u, kind, pos = rng.random(3)
        pairs = [j for j in range(len(word) - 1) if word[j] != word[j + 1]]
        if u >= level:
            out.append(word)
        elif kind < 0.5 and pairs:
            i = pairs[int(pos * len(pairs))]
            out.append(word[:i] + word[i + 1] + word[i] + word[i + 2:])
    return " ".join(out)


def add_word_noise(batch: Batch, level: float, texts: Mapping[str, str | None], tokenizer: object,
                   seed: int = DEFAULT_MASK_SEED) -> Batch:
    """Word-level noise on the raw transcripts (``texts``: sample id -> text), re-tokenised into
    ``text_tokens`` and the text mask (for a model that reads token ids; at most the batch's text length).
    Samples without a transcript are left as they are."""
    if level <= 0 or batch.text_tokens is None:
        return batch
    tokens, mask = batch.text_tokens.clone(), batch.text_mask.clone()
    aligned = tokens.shape == mask.shape
    L = tokens.shape[1]
    for i, sid in enumerate(batch.ids):
        text = texts.get(sid)
        if text is None:
            continue
        noisy = perturb_words(text, level, sample_rng(seed, "words", sid))
        ids = tokenizer(noisy, truncation=True, max_length=L)["input_ids"]
        tokens[i] = 0
        tokens[i, :len(ids)] = torch.as_tensor(ids, dtype=tokens.dtype)
        if aligned:
            mask[i] = False
            mask[i, :len(ids)] = True
    return replace(batch, text_tokens=tokens, text_mask=mask)


@dataclass(frozen=True)
class MissingAugment:
    """Protocol-A drops on training batches (``trainer.missing_rate`` / ``trainer.missing_schedule``).

    ``schedule`` "none": every sample at ``rate``. "lnln" (after LNLN, Zhang et al., NeurIPS 2024): per epoch
    and sample, half the samples (a fair coin) stay clean and the others draw one rate per modality from
    U(0, 1). The draws come from (``seed``, epoch, sample id), so they are redrawn every epoch and a resumed
    run sees the same ones."""

    # the run's seed
    seed: int
    # fixed protocol-A rate (schedule "none")
    rate: float = 0.0
    # "none" or "lnln" (checked by TrainConfig)
    schedule: str = "none"
    # the token id of dropped text tokens (None: the model does not read token ids)
    unk_id: int | None = None

    @property
    def active(self) -> bool:
        return self.rate > 0 or self.schedule != "none"

    def __call__(self, batch: Batch, epoch: int) -> Batch:
        if self.schedule == "none":
            return drop_steps(batch, self.rate, self.seed, unk_id=self.unk_id, stream="train", keys=(epoch,))
        draws = np.stack([sample_rng(self.seed, "lnln", i, epoch).random(1 + len(MODALITIES)) for i in batch.ids])
        clean = draws[:, 0] < 0.5
        rates = {m: torch.from_numpy(np.where(clean, 0.0, draws[:, 1 + k])) for k, m in enumerate(MODALITIES)}
        return drop_steps(batch, rates, self.seed, unk_id=self.unk_id, stream="train", keys=(epoch,))


def model_unk_id(model: object, explicit: int | None = None) -> int | None:
    """The token id dropped text tokens become: ``explicit``, else the unknown token of the tokenizer of the
    model's fine-tuned text encoder (``config.text_encoder``); None when the model reads no token ids (then only
    its text features are perturbed)."""
    if explicit is not None:
        return int(explicit)
    name = getattr(getattr(model, "config", None), "text_encoder", None)
    return tokenizer_unk_id(name) if name else None


def load_tokenizer(name_or_path: str) -> object:
    """The local tokenizer of a model's ``config.text_encoder``, read without downloading."""
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
    except (ImportError, OSError, ValueError) as e:
        raise MSAError(f"cannot read the tokenizer {name_or_path!r} ({e}); for protocol A pass the unknown-token "
                       "id explicitly (msa robustness --unk-id)") from None


def tokenizer_unk_id(name_or_path: str) -> int:
    """The unknown-token id of a local tokenizer (a model's ``config.text_encoder``)."""
    unk = load_tokenizer(name_or_path).unk_token_id
    if unk is None:
        raise MSAError(f"the tokenizer {name_or_path!r} has no unknown token; pass an id (msa robustness --unk-id)")
    return int(unk)
