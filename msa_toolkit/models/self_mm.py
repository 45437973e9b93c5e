"""Self-MM: self-supervised multi-task learning with unimodal label generation (Yu et al., AAAI 2021).

Paper: "Learning Modality-Specific Representations with Self-Supervised Multi-Task Learning for Multimodal
Sentiment Analysis". Checked against MMSA (thuiar/MMSA @ a94e65d, ``src/MMSA/models/multiTask/SELF_MM.py`` and
``trains/multiTask/SELF_MM.py``; ``benchmarks/parity/parity_mmsa_self_mm.py``).

Architecture (shapes for batch B)::

    text:   BERT state of the first token ([CLS])                 -> x_t [B, Dt]
    audio:  LSTM over the valid steps, last state, Dropout, Linear -> x_a [B, audio_out]
    vision: the same                                              -> x_v [B, vision_out]
    four heads h in {fusion: [x_t; x_a; x_v], text: x_t, audio: x_a, vision: x_v}:
        F_h = ReLU(Linear(Dropout(x_h)))                           (the head's representation)
        y_h = Linear(ReLU(Linear(F_h)))                            (the head's prediction) -> [B]

Objective (:class:`SelfMMObjective`): ``L = sum_h mean_i w_h,i |y_h,i - y*_h,i|`` with the true label for
the fusion head (``w = 1``) and the generated unimodal labels for the others, weighted by
``w = tanh(|y*_m - y*_fusion|)``. ULGM (the unimodal label-generation module) keeps, per training sample,
the four labels and the four representations of its last visit, and per head the centres of the positive
and negative samples' representations (labels > 0 / < 0). From a sample's second visit (the paper's second
epoch) on, its unimodal labels move to
``y_s = 0.5 * alpha * y_f + 0.5 * (y_f + delta_s - delta_f)`` (clamped to [-label_bound, label_bound],
``delta = (d_neg - d_pos) / d_pos`` of the representation's distances to the centres,
``alpha = delta_s / delta_f``) with the momentum ``y <- (n-1)/(n+1) y + 2/(n+1) y_s`` at the n-th visit.
The state is kept in buffers of the objective, keyed by a 64-bit hash of the sample id, so a checkpoint
saves and resumes it. In eval mode the objective is the fusion L1 alone (MMSA's validation loss).

Deviations from MMSA: the visit count replaces MMSA's epoch counter (the same on a full pass per epoch);
centres use only samples already visited (MMSA counts unvisited samples' zero features during epoch 1,
when the centres are not used yet); a head without positive (or negative) samples gets a zero centre
instead of NaN; the LSTMs read each sample's own valid steps in aligned data too (MMSA uses the text
lengths there); frozen text features (no ``text_encoder``) use their first step as the [CLS] state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._fields import doc
from ..space import Choice, Float
from ._registry import register_model
from .base import LossOutput, ModelConfig, ModelOutput, MSAModel, Objective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS
from ..layers import Dropout, MLPHead, SequenceLSTM, build_text_encoder, text_features

__all__ = ["SelfMMConfig", "SelfMM", "SelfMMObjective", "HEADS", "id_keys", "encoder_groups"]

#: the four heads, in the order of the objective's label columns
HEADS = ("fusion", "text", "audio", "vision")
#: parameter-name markers of the no-decay group of a fine-tuned BERT (MMSA's ``bert_no_decay``)
NO_DECAY = ("bias", "LayerNorm.bias", "LayerNorm.weight")
#: MMSA's guard against division by zero in the label-generation distances
ULGM_EPS = 1e-8


@dataclass(frozen=True)
class SelfMMConfig(ModelConfig):
    """Self-MM hyper-parameters; defaults = MMSA's CMU-MOSI setting (config_regression.json ``self_mm``)."""

    audio_hidden: int = doc(16, "audio LSTM width (a_lstm_hidden_size)")
    vision_hidden: int = doc(32, "vision LSTM width (v_lstm_hidden_size)")
    audio_out: int = doc(16, "audio representation width after the LSTM's Linear (audio_out)")
    vision_out: int = doc(32, "vision representation width (video_out)")
    audio_lstm_dropout: float = doc(0.0, "dropout on the audio LSTM's last state (a_lstm_dropout)")
    vision_lstm_dropout: float = doc(0.0, "dropout on the vision LSTM's last state (v_lstm_dropout)")
    fusion_dim: int = doc(128, "width of the fusion head (post_fusion_dim)")
    text_head_dim: int = doc(32, "width of the text head (post_text_dim)")
    audio_head_dim: int = doc(16, "width of the audio head (post_audio_dim)")
    vision_head_dim: int = doc(32, "width of the vision head (post_video_dim)")
    fusion_dropout: float = doc(0.0, "dropout on the fusion head's input (post_fusion_dropout)")
    text_head_dropout: float = doc(0.1, "dropout on the text head's input (post_text_dropout)")
    audio_head_dropout: float = doc(0.1, "dropout on the audio head's input (post_audio_dropout)")
    vision_head_dropout: float = doc(0.0, "dropout on the vision head's input (post_video_dropout)")
    dropout: float = doc(0.0, "unused: Self-MM's dropouts are the per-head and LSTM fields")
    label_bound: float = doc(3.0, "generated unimodal labels are clamped to [-label_bound, label_bound] (H)")
    exclude_zero: bool = doc(True, "positive centre over labels > 0 (True) or >= 0 (excludeZero)")
    optimizer: str = doc("adam", "optimiser (MMSA: adam)")
    lr: float = doc(1e-3, "learning rate of the heads and fusion layers (learning_rate_other)")
    weight_decay: float = doc(1e-3, "weight decay of the heads and fusion layers (weight_decay_other)")
    audio_lr: float = doc(5e-3, "learning rate of the audio subnetwork (learning_rate_audio)")
    audio_weight_decay: float = doc(1e-3, "weight decay of the audio subnetwork (weight_decay_audio)")
    vision_lr: float = doc(5e-3, "learning rate of the vision subnetwork (learning_rate_video)")
    vision_weight_decay: float = doc(1e-3, "weight decay of the vision subnetwork (weight_decay_video)")
    text_encoder_lr: float = doc(5e-5, "learning rate of a fine-tuned text encoder (learning_rate_bert)")
    text_encoder_weight_decay: float = doc(1e-3, "weight decay of a fine-tuned text encoder except its biases "
                                                 "and LayerNorms (weight_decay_bert)")
    batch_size: int = doc(16, "training batch size (MMSA MOSI: 16)")


def encoder_groups(model: nn.Module, lr: float, weight_decay: float) -> list[dict]:
    """The fine-tuned text encoder's optimiser groups (``model.text_encoder``): decayed weights, and biases
    and LayerNorms without decay (MMSA's BERT groups); [] without an encoder."""
    if model.text_encoder is None:
        return []
    named = [(n, p) for n, p in model.text_encoder.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if not any(k in n for k in NO_DECAY)]
    keep = [p for n, p in named if any(k in n for k in NO_DECAY)]
    return [{"params": decay, "lr": lr, "weight_decay": weight_decay},
            {"params": keep, "lr": lr, "weight_decay": 0.0}]


def id_keys(ids: Sequence[str], device: torch.device | str = "cpu") -> torch.Tensor:
    """int64 [B]: a 64-bit BLAKE2b hash of each sample id (the key of per-sample objective state)."""
    keys = [int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "little", signed=True)
            for i in ids]
    return torch.tensor(keys, dtype=torch.long, device=device)


class _Head(nn.Module):
    """``F = ReLU(Linear(Dropout(x)))``, ``y = Linear(ReLU(Linear(F)))``: forward(x) -> (F, y [B])."""

    def __init__(self, in_dim: int, dim: int, dropout: float):
        super().__init__()
        self.embed = nn.Sequential(Dropout(dropout), nn.Linear(in_dim, dim), nn.ReLU())
        self.out = MLPHead(dim, dim, 1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.embed(x)
        return f, self.out(f).squeeze(-1)


#: `msa tune`'s default ranges: MMSA's Self-MM tuning config (config_tune.json "self_mm"), its names mapped as the
#: field docs say: batch size, LSTM widths, head widths, head dropouts and the weight decays as there, the audio,
#: video and other learning rates as log ranges over theirs; single values there (learning_rate_bert 5e-5,
#: audio_out 16, video_out 32, the LSTM dropouts 0, H 3) are fixed here
SELF_MM_SPACE = {"batch_size": Choice(16, 32), **{k: Float(1e-4, 5e-3, log=True) for k in ("audio_lr", "vision_lr")},
                 "lr": Float(1e-4, 1e-3, log=True), "text_encoder_weight_decay": Choice(1e-3, 1e-2),
                 "weight_decay": Choice(1e-3, 1e-2), "audio_weight_decay": Choice(0.0, 1e-3, 1e-2),
                 "vision_weight_decay": Choice(0.0, 1e-3, 1e-2), "audio_hidden": Choice(16, 32),
                 "vision_hidden": Choice(32, 64), "fusion_dim": Choice(64, 128), "text_head_dim": Choice(32, 64),
                 "audio_head_dim": Choice(16, 32), "vision_head_dim": Choice(16, 32),
                 **{f"{k}_dropout": Choice(0.0, 0.1) for k in ("fusion", "text_head", "audio_head", "vision_head")}}


@register_model("self_mm", SelfMMConfig, search_space=SELF_MM_SPACE,
                presets={
                    "mosi": {**MOSI_INPUTS},
                    "mosei": {**MOSEI_INPUTS, "batch_size": 32, "vision_lr": 1e-4, "audio_weight_decay": 0.0,
                              "vision_weight_decay": 0.0, "weight_decay": 0.01, "fusion_dropout": 0.1,
                              "text_head_dropout": 0.0, "audio_head_dropout": 0.0},
                    "sims": {**SIMS_INPUTS, "batch_size": 32, "audio_weight_decay": 0.01,
                             "vision_weight_decay": 0.01, "vision_hidden": 64, "text_head_dim": 64,
                             "label_bound": 1.0},
                    "tiny": {"audio_hidden": 4, "vision_hidden": 4, "audio_out": 4, "vision_out": 4,
                             "fusion_dim": 8, "text_head_dim": 4, "audio_head_dim": 4, "vision_head_dim": 4,
                             "text_head_dropout": 0.0, "audio_head_dropout": 0.0},
                },
                summary="Self-MM: multi-task learning with self-supervised unimodal labels (Yu et al., 2021)")
class SelfMM(MSAModel):
    """Self-MM. ``forward(batch) -> ModelOutput(prediction [B], aux)``; ``aux`` holds ``pred_<head>`` [B] and
    ``feature_<head>`` [B, width] for the four heads (fusion, text, audio, vision).

    Gradient note (``grad_exempt``): a sample's unimodal labels equal its label until ULGM first moves them,
    after the loss of its second visit, so the unimodal losses have weight tanh(0) = 0 and the unimodal
    heads get no gradient in the first two epochs (as in MMSA); tests/models/test_zoo_mmsa_part1.py checks
    that they do from the third visit on.
    """

    #: parameters without gradient on a first or second visit (see the class docstring)
    grad_exempt: ClassVar[tuple[str, ...]] = ("heads.text.", "heads.audio.", "heads.vision.")

    def __init__(self, config: SelfMMConfig):
        super().__init__(config)
        c = config
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        self.audio_lstm = SequenceLSTM(c.audio_dim, c.audio_hidden)
        self.audio_proj = nn.Sequential(Dropout(c.audio_lstm_dropout), nn.Linear(c.audio_hidden, c.audio_out))
        self.vision_lstm = SequenceLSTM(c.vision_dim, c.vision_hidden)
        self.vision_proj = nn.Sequential(Dropout(c.vision_lstm_dropout), nn.Linear(c.vision_hidden, c.vision_out))
        self.heads = nn.ModuleDict({
            "fusion": _Head(dt + c.audio_out + c.vision_out, c.fusion_dim, c.fusion_dropout),
            "text": _Head(dt, c.text_head_dim, c.text_head_dropout),
            "audio": _Head(c.audio_out, c.audio_head_dim, c.audio_head_dropout),
            "vision": _Head(c.vision_out, c.vision_head_dim, c.vision_head_dropout)})
        widths = {"fusion": c.fusion_dim, "text": c.text_head_dim, "audio": c.audio_head_dim,
                  "vision": c.vision_head_dim}
        self.set_objective(SelfMMObjective(widths, c.label_bound, c.exclude_zero))

    def forward(self, batch) -> ModelOutput:
        text = text_features(self.text_encoder, batch)
        x = {"text": text[:, 0] * batch.present("text")[:, None].to(text.dtype),
             "audio": self.audio_proj(self.audio_lstm.last(batch.audio, batch.audio_mask)),
             "vision": self.vision_proj(self.vision_lstm.last(batch.vision, batch.vision_mask))}
        x["fusion"] = torch.cat([x["text"], x["audio"], x["vision"]], dim=-1)
        aux = {}
        for h in HEADS:
            aux[f"feature_{h}"], aux[f"pred_{h}"] = self.heads[h](x[h])
        return ModelOutput(aux["pred_fusion"], aux)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """MMSA's five Adam groups: BERT (decayed / not), audio and vision subnetworks, everything else
        (the trainer's ``lr`` / ``weight_decay``)."""
        c = self.config
        audio = [*self.audio_lstm.parameters(), *self.audio_proj.parameters()]
        vision = [*self.vision_lstm.parameters(), *self.vision_proj.parameters()]
        encoder = () if self.text_encoder is None else self.text_encoder.parameters()
        taken = {id(p) for p in audio + vision} | {id(p) for p in encoder}
        other = [p for p in self.parameters() if p.requires_grad and id(p) not in taken]
        return [*encoder_groups(self, c.text_encoder_lr, c.text_encoder_weight_decay),
                {"params": audio, "lr": c.audio_lr, "weight_decay": c.audio_weight_decay},
                {"params": vision, "lr": c.vision_lr, "weight_decay": c.vision_weight_decay},
                {"params": other, "lr": lr, "weight_decay": weight_decay}]


class SelfMMObjective(Objective):
    """Self-MM's weighted multi-task L1 with ULGM's per-sample labels (see the module docstring).

    Buffers (saved with the model): ``keys`` int64 [N] (sorted id hashes of the samples seen in training),
    ``labels`` [N, 4] (fusion, text, audio, vision), ``visits`` int64 [N], ``feature_<head>`` [N, width].
    Training batches need ``batch.ids``. Components: ``l1_<head>`` (fusion weighted 1, others by tanh gaps).
    """

    def __init__(self, widths: dict[str, int], label_bound: float, exclude_zero: bool):
        super().__init__()
        self.label_bound, self.exclude_zero = label_bound, exclude_zero
        self.register_buffer("keys", torch.zeros(0, dtype=torch.long))
        self.register_buffer("labels", torch.zeros(0, len(HEADS)))
        self.register_buffer("visits", torch.zeros(0, dtype=torch.long))
        for h in HEADS:
            self.register_buffer(f"feature_{h}", torch.zeros(0, widths[h]))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Resize the per-sample buffers to the stored number of samples before loading them."""
        for name, buf in list(self._buffers.items()):
            stored = state_dict.get(prefix + name)
            if buf is not None and stored is not None and stored.shape != buf.shape:
                self._buffers[name] = buf.new_zeros(stored.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def rows(self, ids: Sequence[str], label: torch.Tensor) -> torch.Tensor:
        """Row of each sample in the buffers; a sample seen for the first time gets its label in all four
        columns (MMSA's ``init_labels``) and zero features."""
        keys = id_keys(ids, self.keys.device)
        pos = torch.searchsorted(self.keys, keys).clamp_max(max(len(self.keys) - 1, 0))
        new = keys.unique()[~torch.isin(keys.unique(), self.keys)]
        if len(new):
            first = torch.stack([label[(keys == k).nonzero()[0, 0]] for k in new]).to(self.labels.dtype)
            grown = {"keys": torch.cat([self.keys, new]),
                     "labels": torch.cat([self.labels, first[:, None].expand(-1, len(HEADS))]),
                     "visits": torch.cat([self.visits, self.visits.new_zeros(len(new))])}
            for h in HEADS:
                f = self._buffers[f"feature_{h}"]
                grown[f"feature_{h}"] = torch.cat([f, f.new_zeros(len(new), f.shape[1])])
            order = grown["keys"].argsort()
            for name, value in grown.items():
                self._buffers[name] = value[order]
            pos = torch.searchsorted(self.keys, keys)
        return pos

    def centres(self, head: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive, negative) centre of ``head``'s stored representations, by the head's current labels."""
        y, f = self.labels[:, HEADS.index(head)], self._buffers[f"feature_{head}"]
        seen = self.visits > 0
        groups = ((y > 0) if self.exclude_zero else (y >= 0)) & seen, (y < 0) & seen
        return tuple((f * g[:, None]).sum(0) / g.sum().clamp_min(1) for g in groups)

    @torch.no_grad()
    def update(self, rows: torch.Tensor, output: ModelOutput) -> None:
        """ULGM after a training step: new unimodal labels (from the second visit), then the representations."""
        n = (self.visits[rows] + 1).to(self.labels.dtype)  # this visit's number (MMSA: the epoch)
        if bool((n > 1).any()):
            def delta(head: str) -> torch.Tensor:
                pos, neg = self.centres(head)
                f = output.aux[f"feature_{head}"].detach().to(pos.dtype)
                d_pos, d_neg = (f - pos).norm(dim=-1), (f - neg).norm(dim=-1)
                return (d_neg - d_pos) / (d_pos + ULGM_EPS)

            y_f, delta_f = self.labels[rows, 0], delta("fusion")
            later = n > 1
            for col, head in enumerate(HEADS[1:], start=1):
                delta_s = delta(head)
                alpha = delta_s / (delta_f + ULGM_EPS)
                new = (0.5 * alpha * y_f + 0.5 * (y_f + delta_s - delta_f)).clamp(-self.label_bound,
                                                                                   self.label_bound)
                moved = (n - 1) / (n + 1) * self.labels[rows, col] + 2 / (n + 1) * new
                self.labels[rows, col] = torch.where(later, moved, self.labels[rows, col])
        self.visits[rows] += 1
        for h in HEADS:
            self._buffers[f"feature_{h}"][rows] = output.aux[f"feature_{h}"].detach().to(self.labels.dtype)

    def forward(self, output: ModelOutput, batch) -> LossOutput:
        label = batch.label.to(output.prediction.dtype)
        if not self.training:
            loss = F.l1_loss(output.prediction, label)
            return LossOutput(loss, {"l1_fusion": loss})
        if len(batch.ids) != batch.size:
            raise ValueError("Self-MM's objective keeps per-sample unimodal labels: a training batch needs its "
                             f"sample ids (batch.ids has {len(batch.ids)} for {batch.size} samples)")
        rows = self.rows(batch.ids, label)
        targets = self.labels[rows].to(label.dtype)
        parts = {}
        for col, h in enumerate(HEADS):
            w = 1.0 if col == 0 else torch.tanh((targets[:, col] - targets[:, 0]).abs())
            parts[f"l1_{h}"] = (w * (output.aux[f"pred_{h}"] - targets[:, col]).abs()).mean()
        self.update(rows, output)
        return LossOutput(sum(parts.values()), parts)
