"""Baselines for ablations and sanity checks: text-only, late fusion, TFN and MulT.

All take the common :class:`~msa_toolkit.data.batch.Batch` and return a
:class:`~msa_toolkit.models.base.ModelOutput` with ``prediction`` [B]; all are
trained with a single L1/MSE :class:`~msa_toolkit.models.base.RegressionObjective`.
Each may fine-tune a text encoder (``config.text_encoder``), in which case
``batch.text_tokens`` replaces ``batch.text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .._fields import doc
from ..spec import MODALITIES
from ._registry import register_model
from .base import ModelConfig, ModelOutput, MSAModel, RegressionObjective
from .presets import MOSEI_INPUTS, MOSI_INPUTS
from ..layers import (ConvProjection, CrossModalTransformer, Dropout, MLPHead, ResidualHead, build_text_encoder,
                      last_valid, masked_mean, run_rnn, text_features)

__all__ = ["TextOnlyConfig", "TextOnly", "LateFusionConfig", "LateFusion", "TFNConfig",
           "TFN", "MulTConfig", "MulT"]


def _input_dims(cfg: ModelConfig, text_dim: int) -> dict[str, int]:
    return {"text": text_dim, "audio": cfg.audio_dim, "vision": cfg.vision_dim}


# --------------------------------------------------------------------------- text only


@dataclass(frozen=True)
class TextOnlyConfig(ModelConfig):
    """Text-only baseline: masked mean of text features, then an MLP."""

    hidden: int = doc(128, "hidden width of the MLP head")
    layers: int = doc(2, "number of Linear layers in the head")
    loss: str = doc("l1", "training criterion: l1 | mse")
    lr: float = doc(1e-3, "learning rate")


@register_model("text_only", TextOnlyConfig, presets={"mosi": dict(MOSI_INPUTS), "mosei": dict(MOSEI_INPUTS),
                                                  "tiny": {"hidden": 8}},
                summary="Baseline: masked-mean text features + MLP")
class TextOnly(MSAModel):
    """``prediction = MLP(masked_mean(text))``. Shapes: text [B, Lt, Dt] -> prediction [B]."""

    def __init__(self, config: TextOnlyConfig):
        super().__init__(config)
        self.text_encoder, dt = build_text_encoder(config.text_encoder, config.text_dim)
        self.head = MLPHead(dt, config.hidden, 1, config.layers, config.dropout)
        self.set_objective(RegressionObjective(config.loss))

    def forward(self, batch) -> ModelOutput:
        text = text_features(self.text_encoder, batch)
        return ModelOutput(self.head(masked_mean(text, batch.text_mask)).squeeze(-1))


# --------------------------------------------------------------------------- late fusion


@dataclass(frozen=True)
class LateFusionConfig(ModelConfig):
    """Late fusion: one encoder + head per modality, fused at the decision or representation level."""

    hidden: int = doc(64, "per-modality hidden width")
    fusion: str = doc("concat", "concat: one head over the concatenated per-modality representations; "
                                "mean: average the per-modality predictions of the present modalities")
    loss: str = doc("l1", "training criterion: l1 | mse")
    lr: float = doc(1e-3, "learning rate")


@register_model("late_fusion", LateFusionConfig,
                presets={"mosi": dict(MOSI_INPUTS), "mosei": dict(MOSEI_INPUTS), "tiny": {"hidden": 8}},
                summary="Baseline: per-modality encoders, late fusion (concat or averaged heads)")
class LateFusion(MSAModel):
    """Per modality: ``Linear -> ReLU -> masked mean -> Linear -> ReLU`` gives h_m [B, hidden].

    ``fusion="concat"``: prediction = MLP([h_t; h_a; h_v]).
    ``fusion="mean"``: each modality has a head; prediction = mean of the heads of the
    modalities present in the sample (text alone if none is present). aux holds the
    per-modality representations ``h_<m>`` [B, hidden].
    """

    def __init__(self, config: LateFusionConfig):
        super().__init__(config)
        if config.fusion not in ("concat", "mean"):
            raise ValueError(f"fusion must be 'concat' or 'mean', got {config.fusion!r}")
        self.text_encoder, dt = build_text_encoder(config.text_encoder, config.text_dim)
        dims = _input_dims(config, dt)
        h = config.hidden
        self.step = nn.ModuleDict({m: nn.Sequential(nn.Linear(dims[m], h), nn.ReLU()) for m in MODALITIES})
        self.post = nn.ModuleDict({m: nn.Sequential(Dropout(config.dropout), nn.Linear(h, h), nn.ReLU())
                                   for m in MODALITIES})
        if config.fusion == "concat":
            self.head = MLPHead(3 * h, h, 1, 2, config.dropout)
        else:
            self.heads = nn.ModuleDict({m: nn.Linear(h, 1) for m in MODALITIES})
        self.set_objective(RegressionObjective(config.loss))

    def forward(self, batch) -> ModelOutput:
        feats = {"text": text_features(self.text_encoder, batch), "audio": batch.audio, "vision": batch.vision}
        reps = {m: self.post[m](masked_mean(self.step[m](feats[m]), batch.features(m)[1])) for m in MODALITIES}
        aux = {f"h_{m}": reps[m] for m in MODALITIES}
        if self.config.fusion == "concat":
            pred = self.head(torch.cat([reps[m] for m in MODALITIES], dim=-1)).squeeze(-1)
        else:
            preds = torch.stack([self.heads[m](reps[m]).squeeze(-1) for m in MODALITIES], dim=1)  # [B, 3]
            present = torch.stack([batch.present(m) for m in MODALITIES], dim=1)
            present[:, 0] |= ~present.any(dim=1)
            w = present.to(preds.dtype)
            pred = (preds * w).sum(1) / w.sum(1)
        return ModelOutput(pred, aux)


# --------------------------------------------------------------------------- TFN


@dataclass(frozen=True)
class TFNConfig(ModelConfig):
    """Tensor Fusion Network (Zadeh et al., EMNLP 2017); base ``dropout`` unused (see post_fusion_dropout)."""

    text_hidden: int = doc(128, "LSTM hidden size of the language subnetwork")
    text_out: int = doc(64, "output size of the language subnetwork (after its Linear)")
    audio_hidden: int = doc(16, "hidden/output width of the audio subnetwork")
    vision_hidden: int = doc(16, "hidden/output width of the visual subnetwork")
    post_fusion_dim: int = doc(128, "width of the two post-fusion hidden layers")
    post_fusion_dropout: float = doc(0.2, "dropout in the modality subnetworks and before the post-fusion MLP")
    dropout: float = doc(0.1, "unused: TFN's dropout is post_fusion_dropout")
    loss: str = doc("l1", "training criterion: l1 | mse")
    lr: float = doc(1e-3, "learning rate")
    batch_size: int = doc(32, "training batch size")


class _SubNet(nn.Module):
    """TFN's audio/visual subnetwork: masked mean then three ReLU layers: [B, L, D] -> [B, hidden]."""

    def __init__(self, in_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(masked_mean(x, mask))


@register_model("tfn", TFNConfig,
                presets={"mosi": dict(MOSI_INPUTS), "mosei": dict(MOSEI_INPUTS),
                         "tiny": {"text_hidden": 16, "text_out": 8, "audio_hidden": 4, "vision_hidden": 4,
                                  "post_fusion_dim": 16, "post_fusion_dropout": 0.0}},
                summary="Tensor Fusion Network (Zadeh et al., 2017)")
class TFN(MSAModel):
    """Tensor Fusion Network.

    Language: LSTM over the text sequence, state at the last valid step, Dropout +
    Linear -> z_t [B, text_out]. Audio / vision: masked mean over time + 3-layer MLP
    -> z_a, z_v. Fusion: the flattened outer product ``[z_t;1] x [z_a;1] x [z_v;1]``
    [B, (text_out+1)(audio_hidden+1)(vision_hidden+1)], then a 3-layer MLP.

    Deviations: the paper's LSTM runs over GloVe embeddings; here it runs over the
    batch's text features (or the fine-tuned encoder's states). Audio/visual inputs
    are averaged over their valid steps as in the paper's utterance-level setting.
    A LayerNorm on the averaged audio/visual input replaces the reference code's
    BatchNorm (batch-size-1 safe).
    """

    def __init__(self, config: TFNConfig):
        super().__init__(config)
        c = config
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        self.lstm = nn.LSTM(dt, c.text_hidden, batch_first=True)
        self.text_out = nn.Sequential(Dropout(c.post_fusion_dropout), nn.Linear(c.text_hidden, c.text_out))
        self.audio_net = _SubNet(c.audio_dim, c.audio_hidden, c.post_fusion_dropout)
        self.vision_net = _SubNet(c.vision_dim, c.vision_hidden, c.post_fusion_dropout)
        fused = (c.text_out + 1) * (c.audio_hidden + 1) * (c.vision_hidden + 1)
        self.post = nn.Sequential(Dropout(c.post_fusion_dropout), nn.Linear(fused, c.post_fusion_dim), nn.ReLU(),
                                  nn.Linear(c.post_fusion_dim, c.post_fusion_dim), nn.ReLU(),
                                  nn.Linear(c.post_fusion_dim, 1))
        self.set_objective(RegressionObjective(c.loss))

    def forward(self, batch) -> ModelOutput:
        text = text_features(self.text_encoder, batch)
        states, _ = run_rnn(self.lstm, text)
        z_t = self.text_out(last_valid(states, batch.text_mask))
        z_a = self.audio_net(batch.audio, batch.audio_mask)
        z_v = self.vision_net(batch.vision, batch.vision_mask)
        one = z_t.new_ones(z_t.shape[0], 1)
        t, a, v = (torch.cat([z, one], dim=1) for z in (z_t, z_a, z_v))
        fusion = torch.einsum("bi,bj,bk->bijk", t, a, v).flatten(1)
        return ModelOutput(self.post(fusion).squeeze(-1), {"z_text": z_t, "z_audio": z_a, "z_vision": z_v})


# --------------------------------------------------------------------------- MulT

@dataclass(frozen=True)
class MulTConfig(ModelConfig):
    """Multimodal Transformer (Tsai et al., ACL 2019), unaligned setting (base ``dropout`` unused)."""

    dim: int = doc(30, "common model width after the conv projections")
    heads: int = doc(5, "attention heads of every transformer")
    layers: int = doc(5, "layers of each crossmodal transformer")
    mem_layers: int = doc(5, "layers of each modality's self-attention memory transformer (MulT: max(layers, 3))")
    kernel_text: int = doc(1, "Conv1d kernel size of the text input projection")
    kernel_audio: int = doc(1, "Conv1d kernel size of the audio input projection")
    kernel_vision: int = doc(1, "Conv1d kernel size of the vision input projection")
    attn_dropout: float = doc(0.1, "attention dropout of the text-sourced crossmodal blocks and the memory "
                                   "transformers")
    attn_dropout_audio: float = doc(0.0, "attention dropout of the audio-sourced crossmodal blocks")
    attn_dropout_vision: float = doc(0.0, "attention dropout of the vision-sourced crossmodal blocks")
    dropout: float = doc(0.1, "unused: MulT has the separate dropouts attn_/ff_/res_/embed_/out_dropout")
    ff_dropout: float = doc(0.1, "feed-forward activation dropout of the transformers")
    res_dropout: float = doc(0.1, "residual dropout of the transformers")
    embed_dropout: float = doc(0.25, "dropout on the transformers' inputs after adding positions")
    out_dropout: float = doc(0.0, "dropout inside the residual output head")
    loss: str = doc("l1", "training criterion: l1 | mse")
    optimizer: str = doc("adam", "optimiser (MulT: adam)")
    lr: float = doc(1e-3, "learning rate (MulT: 1e-3)")
    batch_size: int = doc(24, "training batch size (MulT MOSI: 24)")
    scheduler: str = doc("plateau", "learning-rate schedule (MulT: reduce on plateau)")
    grad_clip_norm: float = doc(0.8, "clip the global gradient norm (MulT MOSI: 0.8)")
    positions: str = doc("fairseq", "position table of the encoders (layers.sinusoidal_table): fairseq = the "
                                    "reference code's; interleaved = the table of checkpoints without this field")
    shared_kv_norm: bool = doc(True, "one LayerNorm for query and key/value in cross-modal blocks (reference); "
                                     "False = separate norms (checkpoints without this field)")

    #: values of fields added after early checkpoints: a stored config without them was trained with these
    LEGACY_VALUES: ClassVar[dict] = {"positions": "interleaved", "shared_kv_norm": False}


@register_model("mult", MulTConfig,
                presets={
                    # MulT's published unaligned CMU-MOSI setting
                    "mosi": {**MOSI_INPUTS, "dim": 30, "heads": 5, "layers": 5, "attn_dropout": 0.2,
                             "attn_dropout_audio": 0.0,
                             "attn_dropout_vision": 0.0, "ff_dropout": 0.1, "res_dropout": 0.1,
                             "embed_dropout": 0.25, "out_dropout": 0.0, "lr": 1e-3, "batch_size": 24,
                             "grad_clip_norm": 0.8},
                    # MulT's published unaligned CMU-MOSEI setting
                    "mosei": {**MOSEI_INPUTS, "dim": 30, "heads": 5, "layers": 5,
                              "attn_dropout": 0.1, "attn_dropout_audio": 0.0, "attn_dropout_vision": 0.0,
                              "ff_dropout": 0.1, "res_dropout": 0.1, "embed_dropout": 0.25, "out_dropout": 0.1,
                              "lr": 1e-3, "batch_size": 16, "grad_clip_norm": 1.0},
                    # for tests
                    "tiny": {"dim": 8, "heads": 2, "layers": 1, "mem_layers": 1},
                },
                summary="Multimodal Transformer, unaligned (Tsai et al., 2019)")
class MulT(MSAModel):
    """MulT: six crossmodal transformers (every source -> every target) + self-attention memories.

    For each target modality m: the crossmodal transformers from the two other
    modalities give [B, L_m, d] each; they are concatenated ([B, L_m, 2d]), passed
    through a self-attention transformer and the state at the last valid step is
    kept. The three [2d] states are concatenated ([B, 6d]) and go through a
    residual MLP head to the prediction [B].

    Follows the reference code in its position table (fairseq: positions from 1, sin|cos
    halves) and in normalising source and target with one shared LayerNorm per block.
    Deviations: "same" padding in the conv projections so any
    length works; the last *valid* step (not the last padded step) is pooled; key
    padding masks are applied and attention is bidirectional (the reference attends
    over padding, with its causal "future" mask on by default).
    """

    def __init__(self, config: MulTConfig):
        super().__init__(config)
        c = config
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        dims = _input_dims(c, dt)
        kernels = {"text": c.kernel_text, "audio": c.kernel_audio, "vision": c.kernel_vision}
        attn_drop = {"text": c.attn_dropout, "audio": c.attn_dropout_audio, "vision": c.attn_dropout_vision}
        self.proj = nn.ModuleDict({m: ConvProjection(dims[m], c.dim, kernels[m]) for m in MODALITIES})

        def tf(dim: int, cross: bool, layers: int, attn: float) -> CrossModalTransformer:
            return CrossModalTransformer(dim, c.heads, layers, cross=cross, dropout=c.res_dropout,
                                         attn_dropout=attn, ff_dropout=c.ff_dropout, embed_dropout=c.embed_dropout,
                                         positions=c.positions, shared_kv_norm=c.shared_kv_norm)

        # cross[f"{src}_to_{tgt}"]: target queries, source keys/values (attention dropout of the source)
        self.cross = nn.ModuleDict({f"{s}_to_{t}": tf(c.dim, True, c.layers, attn_drop[s])
                                    for t in MODALITIES for s in MODALITIES if s != t})
        self.mem = nn.ModuleDict({m: tf(2 * c.dim, False, c.mem_layers, c.attn_dropout) for m in MODALITIES})
        self.head = ResidualHead(6 * c.dim, 1, c.out_dropout)
        self.set_objective(RegressionObjective(c.loss))

    def forward(self, batch) -> ModelOutput:
        text = text_features(self.text_encoder, batch)
        x = {"text": text, "audio": batch.audio, "vision": batch.vision}
        masks = {m: batch.features(m)[1] for m in MODALITIES}
        p = {m: self.proj[m](x[m], masks[m]) for m in MODALITIES}
        states = []
        for t in MODALITIES:
            hs = [self.cross[f"{s}_to_{t}"](p[t], masks[t], p[s], masks[s]) for s in MODALITIES if s != t]
            states.append(self.mem[t].forward_last(torch.cat(hs, dim=-1), masks[t]))
        pred, rep = self.head(torch.cat(states, dim=-1))
        return ModelOutput(pred.squeeze(-1), {"representation": rep})
