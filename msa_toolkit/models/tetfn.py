"""TETFN: Text Enhanced Transformer Fusion Network (Wang et al., Pattern Recognition 2023, "TETFN: A text
enhanced transformer fusion network for multimodal sentiment analysis").

Text (BERT), audio and vision (an LSTM each) are projected to a common width by 1-D convolutions. As in MulT,
each modality is the target of cross-modal transformers from the other two, then of a self-attention memory
transformer whose last state is kept; the two non-verbal pairs are *text-enhanced*: for audio <- vision, the
vision sequence first attends to the text (one layer) and audio then attends to that text-enhanced vision (two
layers), and symmetrically for vision <- audio. A fusion head reads the three states; unimodal heads read
each modality's max-pooled projection. The unimodal heads train on labels generated during training from the
multimodal label (Self-MM's unimodal label generation: the distances of a sample's features to the positive
and negative class centres), each loss weighted by how far its label moved from the multimodal one.

Checked against MMSA's ``models/multiTask/TETFN.py`` (thuiar/MMSA @ a94e65d) by
``benchmarks/parity/parity_mmsa_tetfn.py``; presets from MMSA's ``config/config_regression.json`` ("tetfn").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._fields import doc
from ..layers import ConvProjection, CrossModalTransformer, Dropout, build_text_encoder, text_features
from ..space import Choice, Float
from ._registry import register_model
from .base import LossOutput, ModelConfig, ModelOutput, MSAModel, Objective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS

__all__ = ["TETFNConfig", "TETFN", "TETFNObjective", "UnimodalLabels"]

#: task names of the four heads (MMSA M / T / A / V)
TASKS = ("fusion", "text", "audio", "vision")
#: layers of every cross-modal and memory transformer, and of the text-enhancing lower transformer (MMSA fixes them)
LAYERS, LOWER_LAYERS = 2, 1
#: MMSA's guard against division by zero in the label generation
EPS = 1e-8


@dataclass(frozen=True)
class TETFNConfig(ModelConfig):
    """TETFN (base ``dropout`` unused: each part has its own)."""

    audio_hidden: int = doc(16, "hidden size of the audio LSTM (a_lstm_hidden_size)")
    vision_hidden: int = doc(64, "hidden size of the visual LSTM (v_lstm_hidden_size)")
    kernel_text: int = doc(1, "kernel of the text Conv1d projection (valid padding)")
    kernel_audio: int = doc(1, "kernel of the audio Conv1d after its LSTM")
    kernel_vision: int = doc(1, "kernel of the visual Conv1d after its LSTM (MMSA builds it with the audio kernel)")
    dim: int = doc(50, "common width of the transformers (dst_feature_dims)")
    heads: int = doc(5, "attention heads (nheads)")
    attn_dropout: float = doc(0.1, "attention dropout of the text-sourced, memory and text-enhanced transformers")
    attn_dropout_audio: float = doc(0.0, "attention dropout of text <- audio")
    attn_dropout_vision: float = doc(0.1, "attention dropout of text <- vision")
    relu_dropout: float = doc(0.0, "feed-forward activation dropout")
    res_dropout: float = doc(0.1, "residual dropout")
    embed_dropout: float = doc(0.0, "dropout on the transformers' scaled inputs")
    post_fusion_dim: int = doc(64, "width of the fusion head")
    post_fusion_dropout: float = doc(0.0, "dropout before the fusion head")
    post_text_dim: int = doc(32, "width of the text head")
    post_text_dropout: float = doc(0.0, "dropout before the text head")
    post_audio_dim: int = doc(32, "width of the audio head")
    post_audio_dropout: float = doc(0.0, "dropout before the audio head")
    post_vision_dim: int = doc(16, "width of the visual head")
    post_vision_dropout: float = doc(0.0, "dropout before the visual head")
    label_bound: float = doc(3.0, "generated unimodal labels are clamped to [-H, H] (MMSA H)")
    exclude_zero: bool = doc(True, "a zero label counts in no class centre (MMSA excludeZero)")
    dropout: float = doc(0.1, "unused: TETFN has the separate dropouts above")
    text_lr: float = doc(3e-5, "learning rate of the fine-tuned text encoder (learning_rate_bert)")
    text_weight_decay: float = doc(1e-3, "its weight decay, none on biases and LayerNorm (weight_decay_bert)")
    audio_lr: float = doc(5e-4, "learning rate of the audio LSTM + Conv1d (learning_rate_audio)")
    audio_weight_decay: float = doc(0.01, "their weight decay (weight_decay_audio)")
    vision_lr: float = doc(3e-4, "learning rate of the visual LSTM + Conv1d (learning_rate_video)")
    vision_weight_decay: float = doc(0.0, "their weight decay (weight_decay_video)")
    lr: float = doc(3e-4, "learning rate of every other parameter (learning_rate_other)")
    weight_decay: float = doc(0.01, "weight decay of every other parameter (weight_decay_other)")
    batch_size: int = doc(64, "training batch size")


def _mmsa(values: dict) -> dict:
    """A preset from MMSA's tetfn entry, its key -> value pairs renamed (MMSA builds the visual Conv1d with
    conv1d_kernel_size_a: that value is kernel_vision)."""
    names = {"a_lstm_hidden_size": "audio_hidden", "v_lstm_hidden_size": "vision_hidden",
             "conv1d_kernel_size_l": "kernel_text", "conv1d_kernel_size_a": "kernel_audio",
             "dst_feature_dims": "dim", "nheads": "heads", "attn_dropout": "attn_dropout",
             "attn_dropout_a": "attn_dropout_audio", "attn_dropout_v": "attn_dropout_vision",
             "relu_dropout": "relu_dropout", "embed_dropout": "embed_dropout", "res_dropout": "res_dropout",
             "post_fusion_dropout": "post_fusion_dropout", "post_fusion_dim": "post_fusion_dim",
             "post_text_dropout": "post_text_dropout", "post_text_dim": "post_text_dim",
             "post_audio_dropout": "post_audio_dropout", "post_audio_dim": "post_audio_dim",
             "post_video_dropout": "post_vision_dropout", "post_video_dim": "post_vision_dim", "H": "label_bound",
             "learning_rate_bert": "text_lr", "weight_decay_bert": "text_weight_decay",
             "learning_rate_audio": "audio_lr", "weight_decay_audio": "audio_weight_decay",
             "learning_rate_video": "vision_lr", "weight_decay_video": "vision_weight_decay",
             "learning_rate_other": "lr", "weight_decay_other": "weight_decay", "batch_size": "batch_size"}
    out = {names[k]: v for k, v in values.items()}
    out["kernel_vision"] = values["conv1d_kernel_size_a"]
    return out


#: MMSA config_regression.json "tetfn".datasetParams.<dataset> (the values TETFN reads)
_MOSI = {"a_lstm_hidden_size": 16, "v_lstm_hidden_size": 64, "conv1d_kernel_size_l": 1, "conv1d_kernel_size_a": 1,
         "dst_feature_dims": 50, "nheads": 5, "attn_dropout": 0.1, "attn_dropout_a": 0.0, "attn_dropout_v": 0.1,
         "relu_dropout": 0.0, "embed_dropout": 0.0, "res_dropout": 0.1, "post_fusion_dropout": 0.0,
         "post_fusion_dim": 64, "post_text_dropout": 0.0, "post_text_dim": 32, "post_audio_dropout": 0.0,
         "post_audio_dim": 32, "post_video_dropout": 0.0, "post_video_dim": 16, "H": 3.0, "learning_rate_bert": 3e-5,
         "weight_decay_bert": 1e-3, "learning_rate_audio": 5e-4, "weight_decay_audio": 0.01,
         "learning_rate_video": 3e-4, "weight_decay_video": 0.0, "learning_rate_other": 3e-4,
         "weight_decay_other": 0.01, "batch_size": 64}
_MOSEI = {**_MOSI, "a_lstm_hidden_size": 32, "v_lstm_hidden_size": 32, "relu_dropout": 0.1, "embed_dropout": 0.1,
          "res_dropout": 0.0, "post_text_dropout": 0.1, "post_text_dim": 64, "post_video_dropout": 0.1,
          "weight_decay_audio": 0.0, "weight_decay_video": 1e-3, "learning_rate_audio": 1e-3,
          "learning_rate_video": 5e-3, "learning_rate_other": 1e-4, "batch_size": 32}
_SIMS = {**_MOSI, "conv1d_kernel_size_l": 3, "conv1d_kernel_size_a": 5, "attn_dropout": 0.0, "attn_dropout_a": 0.1,
         "attn_dropout_v": 0.0, "relu_dropout": 0.1, "post_fusion_dropout": 0.1, "post_text_dim": 64,
         "post_audio_dim": 16, "post_video_dim": 32, "weight_decay_video": 0.01, "weight_decay_other": 1e-3,
         "learning_rate_audio": 3e-3, "learning_rate_video": 5e-4, "learning_rate_other": 3e-3}


class _AuViSubNet(nn.Module):
    """LSTM, then a Conv1d (valid padding, no bias) to the common width: [B, L, D] -> ([B, L', d], mask [B, L'])."""

    def __init__(self, in_dim: int, hidden: int, dim: int, kernel: int):
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, batch_first=True)
        self.conv = ConvProjection(hidden, dim, kernel, padding="valid")

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, _ = self.rnn(x)
        y = self.conv(h, mask)
        return y, self.conv.output_mask(mask, y.shape[1])


class _Head(nn.Module):
    """Dropout -> Linear -> ReLU (the task's feature) -> Linear -> ReLU -> Linear: [B, D] -> ([B], feature)."""

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.drop, self.l1 = Dropout(dropout), nn.Linear(in_dim, hidden)
        self.l2, self.l3 = nn.Linear(hidden, hidden), nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = torch.relu(self.l1(self.drop(x)))
        return self.l3(torch.relu(self.l2(feature))).squeeze(-1), feature


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over the valid steps [B, L, D] -> [B, D]; zeros for a sample without one."""
    has = mask.any(dim=1, keepdim=True)
    return x.masked_fill(~(mask | ~has).unsqueeze(-1), float("-inf")).amax(dim=1) * has.to(x.dtype)


#: `msa tune`'s default ranges: MMSA's TETFN tuning config (config_tune.json "tetfn"), its names mapped as in
#: _mmsa: LSTM widths, head widths, Conv1d kernels (MMSA lists conv1d_kernel_size_v though its model uses the audio
#: kernel for vision), the dropouts (0.0 / 0.1) and weight decays and batch size as there, the four learning rates as
#: log ranges over theirs; LSTM layers (1), their dropouts (0) and H (3) are single values there, fixed here
TETFN_SPACE = {"batch_size": Choice(32, 64, 128), "text_lr": Float(5e-6, 5e-5, log=True),
               **{k: Float(1e-4, 5e-3, log=True) for k in ("audio_lr", "vision_lr", "lr")},
               "text_weight_decay": Choice(1e-3, 1e-2), "weight_decay": Choice(1e-3, 1e-2),
               "audio_weight_decay": Choice(0.0, 1e-3, 1e-2), "vision_weight_decay": Choice(0.0, 1e-3, 1e-2),
               "audio_hidden": Choice(16, 32), "vision_hidden": Choice(32, 64), "post_fusion_dim": Choice(64, 128),
               "post_text_dim": Choice(32, 64), "post_audio_dim": Choice(16, 32), "post_vision_dim": Choice(16, 32),
               **{k: Choice(1, 3, 5) for k in ("kernel_text", "kernel_audio", "kernel_vision")},
               **{k: Choice(0.0, 0.1) for k in ("post_fusion_dropout", "post_text_dropout", "post_audio_dropout",
                                                "post_vision_dropout", "attn_dropout", "attn_dropout_audio",
                                                "attn_dropout_vision", "relu_dropout", "embed_dropout",
                                                "res_dropout")}}


@register_model("tetfn", TETFNConfig, search_space=TETFN_SPACE, presets={
    "mosi": {**MOSI_INPUTS, **_mmsa(_MOSI)}, "mosei": {**MOSEI_INPUTS, **_mmsa(_MOSEI)},
    "sims": {**SIMS_INPUTS, **_mmsa(_SIMS)},
    "tiny": {"audio_hidden": 4, "vision_hidden": 4, "dim": 8, "heads": 2, "post_fusion_dim": 8, "post_text_dim": 4,
             "post_audio_dim": 4, "post_vision_dim": 4, "attn_dropout": 0.0, "attn_dropout_vision": 0.0,
             "res_dropout": 0.0},
}, summary="Text Enhanced Transformer Fusion Network, multi-task (Wang et al., 2023)")
class TETFN(MSAModel):
    """TETFN. prediction [B] = the fusion head; aux ``pred_<m>`` [B] of the unimodal heads and ``feature_<task>``
    (each head's first-layer features, which the label generation reads).

    Deviations from MMSA: attention is bidirectional over valid steps (MMSA's transformers have its causal
    "future" mask on and no padding masks); the memory transformers keep the last *valid* step; max pooling
    and the convolutions respect padding. The unimodal heads learn from a sample's second epoch on (see
    :class:`TETFNObjective`), so on a first batch they get no gradient (``grad_exempt``).
    """

    #: heads whose loss weight is 0 until the generated labels leave the multimodal label (second epoch on)
    grad_exempt = ("heads.text.", "heads.audio.", "heads.vision.")

    def __init__(self, config: TETFNConfig):
        super().__init__(config)
        c = config
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        self.audio_model = _AuViSubNet(c.audio_dim, c.audio_hidden, c.dim, c.kernel_audio)
        self.vision_model = _AuViSubNet(c.vision_dim, c.vision_hidden, c.dim, c.kernel_vision)
        self.text_proj = ConvProjection(dt, c.dim, c.kernel_text, padding="valid")

        def tf(dim: int, attn: float, layers: int = LAYERS, cross: bool = True, positions: str | None = None):
            return CrossModalTransformer(dim, c.heads, layers, cross=cross, dropout=c.res_dropout, attn_dropout=attn,
                                         ff_dropout=c.relu_dropout, embed_dropout=c.embed_dropout,
                                         positions=positions)

        self.cross = nn.ModuleDict({"audio_to_text": tf(c.dim, c.attn_dropout_audio),
                                    "vision_to_text": tf(c.dim, c.attn_dropout_vision),
                                    "text_to_audio": tf(c.dim, c.attn_dropout),
                                    "text_to_vision": tf(c.dim, c.attn_dropout)})
        # text-enhanced: <other> attends to the text (lower), then the target attends to that (upper)
        self.enhance = nn.ModuleDict({f"{m}_lower": tf(c.dim, c.attn_dropout, LOWER_LAYERS, positions="fairseq")
                                      for m in ("audio", "vision")})
        self.enhance.update({f"{m}_upper": tf(c.dim, c.attn_dropout, positions="fairseq") for m in ("audio", "vision")})
        self.mem = nn.ModuleDict({m: tf(2 * c.dim, c.attn_dropout, cross=False) for m in ("text", "audio", "vision")})
        self.heads = nn.ModuleDict({
            "fusion": _Head(6 * c.dim, c.post_fusion_dim, c.post_fusion_dropout),
            "text": _Head(c.dim, c.post_text_dim, c.post_text_dropout),
            "audio": _Head(c.dim, c.post_audio_dim, c.post_audio_dropout),
            "vision": _Head(c.dim, c.post_vision_dim, c.post_vision_dropout)})
        self.set_objective(TETFNObjective(c))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """MMSA's five groups: text encoder (decayed weights / biases and LayerNorm), audio subnet, visual subnet,
        the rest (``lr`` and ``weight_decay``, which the trainer settings may override)."""
        c, groups = self.config, {k: [] for k in ("text", "text_no_decay", "audio", "vision", "other")}
        for n, p in self.named_parameters():
            if not p.requires_grad:
                continue
            if n.startswith("text_encoder."):
                key = "text_no_decay" if any(s in n for s in ("bias", "LayerNorm.weight")) else "text"
            else:
                key = {"audio_model": "audio", "vision_model": "vision"}.get(n.split(".")[0], "other")
            groups[key].append(p)
        settings = {"text": (c.text_lr, c.text_weight_decay), "text_no_decay": (c.text_lr, 0.0),
                    "audio": (c.audio_lr, c.audio_weight_decay), "vision": (c.vision_lr, c.vision_weight_decay),
                    "other": (lr, weight_decay)}
        return [{"params": ps, "name": k, "lr": settings[k][0], "weight_decay": settings[k][1]}
                for k, ps in groups.items() if ps]

    def forward(self, batch) -> ModelOutput:
        text = text_features(self.text_encoder, batch)
        pl = self.text_proj(text, batch.text_mask)
        ml = self.text_proj.output_mask(batch.text_mask, pl.shape[1])
        pa, ma = self.audio_model(batch.audio, batch.audio_mask)
        pv, mv = self.vision_model(batch.vision, batch.vision_mask)
        x, m = {"text": pl, "audio": pa, "vision": pv}, {"text": ml, "audio": ma, "vision": mv}

        def enhanced(target: str, other: str) -> torch.Tensor:  # target <- (other <- text)
            c = self.enhance[f"{target}_lower"](x[other], m[other], pl, ml)
            return self.enhance[f"{target}_upper"](x[target], m[target], c, m[other])

        def cross(s: str, t: str) -> torch.Tensor:
            return self.cross[f"{s}_to_{t}"](x[t], m[t], x[s], m[s])

        pairs = {"text": (cross("audio", "text"), cross("vision", "text")),
                 "audio": (cross("text", "audio"), enhanced("audio", "vision")),
                 "vision": (cross("text", "vision"), enhanced("vision", "audio"))}
        last = [self.mem[k].forward_last(torch.cat(v, dim=-1), m[k]) for k, v in pairs.items()]
        pred, aux = self.heads["fusion"](torch.cat(last, dim=-1))
        aux = {"feature_fusion": aux}
        for k in ("text", "audio", "vision"):
            aux[f"pred_{k}"], aux[f"feature_{k}"] = self.heads[k](_masked_max(x[k], m[k]))
        return ModelOutput(pred, aux)


class UnimodalLabels:
    """Self-MM's unimodal label generation as TETFN's trainer runs it, keyed by the samples' ids.

    Per training sample: the four labels (fusion = the multimodal label, text/audio/vision initialised to it), the
    heads' last features and how often it was seen (its epoch n). After a batch's loss: for samples seen before,
    with d_p / d_n the distances of a feature to its task's positive / negative centre and
    delta = (d_n - d_p) / (d_p + eps) (delta_f for the fusion features), the new label is
    ``0.5 alpha y_f + 0.5 (y_f + delta_s - delta_f)``, ``alpha = delta_s / (delta_f + eps)``, clamped to [-H, H],
    and the stored label moves to ``(n-1)/(n+1) label + 2/(n+1) new``; then the features are stored and the
    centres become the mean features of the samples whose own task label is > 0 (>= 0 without exclude_zero) / < 0.
    """

    def __init__(self, bound: float, exclude_zero: bool):
        self.bound, self.exclude_zero = bound, exclude_zero
        self.index: dict[str, int] = {}
        self.labels = self.seen = None
        self.features: dict[str, torch.Tensor] = {}
        self.centres: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def rows(self, ids: list[str], label: torch.Tensor) -> torch.Tensor:
        """Row of each id (new ids get rows with every label = the multimodal one)."""
        new = [i for i in dict.fromkeys(ids) if i not in self.index]
        if new:
            y = dict(zip(ids, label.detach().float().tolist()))
            rows = torch.tensor([[y[i]] * len(TASKS) for i in new], device=label.device)
            self.labels = rows if self.labels is None else torch.cat([self.labels, rows])
            zeros = torch.zeros(len(new), dtype=torch.long, device=label.device)
            self.seen = zeros if self.seen is None else torch.cat([self.seen, zeros])
            for i in new:
                self.index[i] = len(self.index)
        return torch.tensor([self.index[i] for i in ids], device=label.device)

    def update(self, rows: torch.Tensor, feats: dict[str, torch.Tensor]) -> None:
        self.seen[rows] += 1
        n = self.seen[rows].float()
        if self.centres and bool((n > 1).any()):
            def delta(task: str) -> torch.Tensor:
                pos, neg = self.centres[task]
                d_p, d_n = (feats[task] - pos).norm(dim=-1), (feats[task] - neg).norm(dim=-1)
                return (d_n - d_p) / (d_p + EPS)

            d_f, y_f = delta("fusion"), self.labels[rows, 0]
            for k, task in enumerate(TASKS[1:], start=1):
                d_s = delta(task)
                new = (0.5 * d_s / (d_f + EPS) * y_f + 0.5 * (y_f + d_s - d_f)).clamp(-self.bound, self.bound)
                moved = (n - 1) / (n + 1) * self.labels[rows, k] + 2 / (n + 1) * new
                self.labels[rows, k] = torch.where(n > 1, moved, self.labels[rows, k])
        for k, task in enumerate(TASKS):
            f = feats[task].detach().float()
            store = self.features.get(task)
            if store is None or store.shape[0] < self.labels.shape[0]:
                grown = f.new_zeros(self.labels.shape[0], f.shape[1])
                if store is not None:
                    grown[:store.shape[0]] = store
                self.features[task] = store = grown
            store[rows] = f
            y, known = self.labels[:, k], self.seen > 0
            pos = known & ((y > 0) if self.exclude_zero else (y >= 0))
            old = self.centres.get(task, (f.new_zeros(f.shape[1]),) * 2)
            self.centres[task] = tuple(store[sel].mean(0) if bool(sel.any()) else o
                                       for sel, o in ((pos, old[0]), (known & (y < 0), old[1])))


class TETFNObjective(Objective):
    """``fusion`` (L1 to the multimodal label) + ``text`` / ``audio`` / ``vision``: mean of
    ``tanh(|y_m - y_f|) |pred_m - y_m|`` with the generated labels y_m (:class:`UnimodalLabels`, updated after each
    training batch). In eval mode, or for a batch without sample ids, nothing is updated (unknown ids use y_f)."""

    def __init__(self, config: TETFNConfig):
        super().__init__()
        self.memory = UnimodalLabels(config.label_bound, config.exclude_zero)

    def forward(self, output: ModelOutput, batch) -> LossOutput:
        y = batch.label.to(output.prediction.dtype)
        track = bool(batch.ids) and len(batch.ids) == y.shape[0]
        rows = self.memory.rows(list(batch.ids), y) if track and self.training else None
        if rows is None and track and self.memory.index:
            known = [self.memory.index.get(i) for i in batch.ids]
            labels = torch.stack([self.memory.labels[k].to(y.dtype) if k is not None else y[j].expand(len(TASKS))
                                  for j, k in enumerate(known)])
        elif rows is not None:
            labels = self.memory.labels[rows].to(y.dtype)
        else:
            labels = y[:, None].expand(-1, len(TASKS))
        comps = {"fusion": (output.prediction - labels[:, 0]).abs().mean()}
        for k, task in enumerate(TASKS[1:], start=1):
            w = torch.tanh((labels[:, k] - labels[:, 0]).abs())
            comps[task] = (w * (output.aux[f"pred_{task}"] - labels[:, k]).abs()).mean()
        if rows is not None:
            self.memory.update(rows, {t: output.aux[f"feature_{t}"].detach() for t in TASKS})
        return LossOutput(sum(comps.values()), comps)
