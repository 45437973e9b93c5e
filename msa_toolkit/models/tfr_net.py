"""TFR-Net: Transformer-based Feature Reconstruction Network for robust MSA with missing features.

Paper: Yuan et al., "Transformer-based Feature Reconstruction Network for Robust Multimodal Sentiment Analysis",
ACM MM 2021. Structure and settings follow MMSA's ``src/MMSA/models/missingTask/TFR_NET`` and
``trains/missingTask/TFR_NET.py`` (thuiar/MMSA @ a94e65d); deviations are listed on :class:`TFRNet`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from .._fields import doc
from ..layers import ConvProjection, CrossModalTransformer, Dropout, build_text_encoder, mask_fill, text_features
from ..space import Choice, Float, Int
from ..spec import MODALITIES
from ._registry import register_model
from ._tfr_parts import GatedUtteranceEncoder, drop_steps, reconstruction_loss
from .base import LossOutput, ModelConfig, ModelOutput, MSAModel, Objective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS

__all__ = ["TFRNetConfig", "TFRNet", "TFRNetObjective"]

#: the BERT [UNK] id MMSA writes into a dropped token (bert-base-uncased / -chinese)
BERT_UNK_ID = 100


@dataclass(frozen=True)
class TFRNetConfig(ModelConfig):
    """TFR-Net (MMSA ``tfr_net``); base ``dropout`` unused (see the named dropouts)."""

    dim: int = doc(30, "width of the aligned features (MMSA dst_feature_dim_nheads[0])")
    heads: int = doc(6, "attention heads (MMSA dst_feature_dim_nheads[1])")
    layers: int = doc(3, "layers of the crossmodal transformers (MMSA nlevels)")
    mem_layers: int = doc(3, "layers of the self-attention memories (MMSA: max(nlevels, 3))")
    kernel_text: int = doc(1, "Conv1d kernel of the text projection")
    kernel_audio: int = doc(5, "Conv1d kernel of the audio projection")
    kernel_vision: int = doc(3, "Conv1d kernel of the vision projection")
    text_dropout: float = doc(0.2, "dropout on the text input")
    attn_dropout: float = doc(0.2, "attention dropout of the text-sourced and memory transformers")
    attn_dropout_audio: float = doc(0.1, "attention dropout of the audio-sourced crossmodal transformers")
    attn_dropout_vision: float = doc(0.0, "attention dropout of the vision-sourced crossmodal transformers")
    ff_dropout: float = doc(0.2, "feed-forward dropout of the transformers (MMSA relu_dropout)")
    res_dropout: float = doc(0.2, "residual dropout of the transformers")
    embed_dropout: float = doc(0.2, "dropout on the transformers' inputs")
    fusion_text_hidden: int = doc(36, "hidden size of the text fusion encoder")
    fusion_audio_hidden: int = doc(20, "hidden size of the audio fusion encoder")
    fusion_vision_hidden: int = doc(48, "hidden size of the vision fusion encoder")
    fusion_gru_layers: int = doc(3, "layers of the fusion encoders' bidirectional GRUs")
    fusion_dropout: float = doc(0.2, "dropout on each fusion encoder's output")
    cls_hidden: int = doc(128, "hidden width of the classifier")
    cls_dropout: float = doc(0.0, "dropout inside the classifier")
    missing_rate_text: float = doc(0.2, "training: probability that a valid text step is dropped (MMSA missing_rate)")
    missing_rate_audio: float = doc(0.2, "training: probability that a valid audio step is dropped")
    missing_rate_vision: float = doc(0.2, "training: probability that a valid vision step is dropped")
    text_unk_id: int = doc(BERT_UNK_ID, "token id written into a dropped token when the text encoder is fine-tuned")
    weight_gen_text: float = doc(5.0, "weight of the text reconstruction loss (MMSA weight_gen_loss[0])")
    weight_gen_audio: float = doc(2.0, "weight of the audio reconstruction loss")
    weight_gen_vision: float = doc(20.0, "weight of the vision reconstruction loss")
    weight_sim: float = doc(5.0, "weight of the CMD term inside each reconstruction loss (MMSA weight_sim_loss)")
    dropout: float = doc(0.0, "unused: TFR-Net has the named dropouts above")
    lr: float = doc(1e-3, "learning rate of the non-BERT parameters (MMSA learning_rate_other)")
    text_encoder_lr: float = doc(2e-6, "learning rate of a fine-tuned text encoder (MMSA learning_rate_bert)")
    text_encoder_weight_decay: float = doc(1e-4, "weight decay of a fine-tuned text encoder's weights (not its "
                                                 "biases and LayerNorms; MMSA weight_decay_bert)")
    weight_decay: float = doc(1e-3, "weight decay of the non-BERT parameters (MMSA weight_decay_other)")
    batch_size: int = doc(24, "training batch size")
    grad_clip_value: float = doc(0.8, "clip each gradient value (MMSA grad_clip)")


class TFRNetObjective(Objective):
    """L1 on the prediction plus, per modality, ``weight_gen_<m>`` · the reconstruction loss of its dropped steps
    (smooth-L1 + ``weight_sim`` · CMD, :func:`~._tfr_parts.reconstruction_loss`). Components ``prediction_l1``,
    ``reconstruction_text`` / ``_audio`` / ``_vision`` (weighted); a reconstruction is 0 when nothing was dropped
    (evaluation: no simulation)."""

    def __init__(self, config: TFRNetConfig):
        super().__init__()
        self.weights = {"text": config.weight_gen_text, "audio": config.weight_gen_audio,
                        "vision": config.weight_gen_vision}
        self.sim = config.weight_sim

    def forward(self, output: ModelOutput, batch) -> LossOutput:
        pred = output.prediction
        comps = {"prediction_l1": nn.functional.l1_loss(pred, batch.label.to(pred.dtype))}
        for m in MODALITIES:
            dropped = output.aux.get(f"dropped_{m}")
            if dropped is None or not bool(dropped.any()):
                comps[f"reconstruction_{m}"] = pred.new_zeros(())
                continue
            rec = reconstruction_loss(output.aux[f"reconstruction_{m}"], output.aux[f"target_{m}"], dropped, self.sim)
            comps[f"reconstruction_{m}"] = self.weights[m] * rec
        return LossOutput(sum(comps.values()), comps)


_COMMON = {"dim": 30, "heads": 6, "kernel_text": 1, "kernel_audio": 5, "kernel_vision": 3, "text_dropout": 0.2,
           "attn_dropout": 0.2, "attn_dropout_audio": 0.1, "attn_dropout_vision": 0.0, "res_dropout": 0.2,
           "fusion_text_hidden": 36, "fusion_audio_hidden": 20, "fusion_vision_hidden": 48, "fusion_gru_layers": 3,
           "fusion_dropout": 0.2, "cls_hidden": 128, "grad_clip_value": 0.8, "text_encoder_weight_decay": 1e-4,
           "weight_decay": 1e-3, "weight_sim": 5.0, "missing_rate_text": 0.2, "missing_rate_audio": 0.2,
           "missing_rate_vision": 0.2}
#: MMSA config_regression.json "tfr_net" (mosi / mosei / sims) and datasetCommonParams' missing_rate 0.2
_PRESETS = {
    "mosi": {**MOSI_INPUTS, **_COMMON, "layers": 3, "ff_dropout": 0.2, "embed_dropout": 0.2, "cls_dropout": 0.0,
             "batch_size": 24, "lr": 1e-3, "text_encoder_lr": 2e-6, "weight_gen_text": 5.0, "weight_gen_audio": 2.0,
             "weight_gen_vision": 20.0},
    "mosei": {**MOSEI_INPUTS, **_COMMON, "layers": 3, "ff_dropout": 0.2, "embed_dropout": 0.2, "cls_dropout": 0.0,
              "batch_size": 24, "lr": 2e-3, "text_encoder_lr": 1e-5, "weight_gen_text": 5e-6,
              "weight_gen_audio": 2e-6, "weight_gen_vision": 2e-5},
    "sims": {**SIMS_INPUTS, **_COMMON, "layers": 2, "ff_dropout": 0.0, "embed_dropout": 0.1, "cls_dropout": 0.1,
             "batch_size": 16, "lr": 2e-3, "text_encoder_lr": 1e-5, "weight_gen_text": 1.0, "weight_gen_audio": 0.01,
             "weight_gen_vision": 1e-4},
    "tiny": {"dim": 8, "heads": 2, "layers": 1, "mem_layers": 1, "fusion_text_hidden": 4, "fusion_audio_hidden": 4,
             "fusion_vision_hidden": 4, "fusion_gru_layers": 1, "cls_hidden": 8, "text_dropout": 0.0,
             "attn_dropout": 0.0, "ff_dropout": 0.0, "res_dropout": 0.0, "embed_dropout": 0.0, "fusion_dropout": 0.0},
}


#: `msa tune`'s default ranges, from MMSA's TFR-Net tuning config (config_tune.json "tfr_net"): kernels, layers,
#: widths (with 6 heads), fusion sizes, batch size; dropouts and learning rates as continuous ranges
TFR_SPACE = {"kernel_text": Choice(1, 3, 5), "kernel_audio": Choice(1, 3, 5), "kernel_vision": Choice(1, 3, 5),
             "dim": Choice(30, 36, 48), "layers": Int(2, 4), "attn_dropout": Float(0.0, 0.4),
             "embed_dropout": Float(0.0, 0.2), "res_dropout": Float(0.0, 0.2), "fusion_gru_layers": Int(1, 3),
             "cls_hidden": Choice(64, 128, 256), "batch_size": Choice(16, 24, 32), "lr": Float(5e-4, 5e-3, log=True)}


@register_model("tfr_net", TFRNetConfig, presets=_PRESETS, search_space=TFR_SPACE,
                summary="TFR-Net: transformer feature reconstruction for missing features (Yuan et al., 2021)")
class TFRNet(MSAModel):
    """TFR-Net.

    Training simulates missing features (as the paper, and MMSA's loader at rate 0.2): each valid step of each
    modality is dropped with ``missing_rate_<m>`` (zeroed; a dropped token becomes ``text_unk_id`` when the text
    encoder is fine-tuned), drawn from torch's generator, so a seeded run is deterministic. In eval mode the
    batch is used as given (``msa robustness`` supplies its own missing inputs).

    Alignment: Conv1d projections to ``dim``; per target modality a self-attention memory and two crossmodal
    transformers (MulT's encoder, :class:`~msa_toolkit.layers.CrossModalTransformer`), concatenated to
    ``h_m`` [B, L_m, 3·dim]. Reconstruction: a linear generator per modality maps ``h_m`` back to the input
    features; the objective compares it with the un-dropped features on the dropped steps. Fusion: per modality
    a gated bidirectional-GRU encoder (max over steps), concatenated, LayerNorm -> Linear -> LeakyReLU -> Dropout
    -> Linear to the prediction [B]. aux: ``reconstruction_<m>``, ``target_<m>``, ``dropped_<m>`` (training).

    Deviations from MMSA's code: no causal (future) mask in the transformers and key padding masks instead;
    MMSA's "final" transformers (``trans_*_final``, embed dim = sequence length) receive a [B, 3·dim, L] tensor as
    (sequence, batch, embed), i.e. they attend across the samples of the batch; the toolkit leaves them out and
    reconstructs from ``h_m`` directly. The classifier's BatchNorm1d is a LayerNorm (batch-size-1 safe); the
    fusion's max runs over valid steps only; the missing-feature draw is per training batch (MMSA draws once per
    dataset with seed 1111, for every split).
    """

    def __init__(self, config: TFRNetConfig):
        super().__init__(config)
        c = config
        if bad := [f"missing_rate_{m}" for m in MODALITIES if not 0.0 <= getattr(c, f"missing_rate_{m}") <= 1.0]:
            raise ValueError(f"model.{bad[0]} is a probability in [0, 1], got {getattr(c, bad[0])}")
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        vocab = getattr(getattr(getattr(self.text_encoder, "model", None), "config", None), "vocab_size", None)
        if isinstance(vocab, int) and not 0 <= c.text_unk_id < vocab:
            raise ValueError(f"model.text_unk_id {c.text_unk_id} is not a token id of the text encoder "
                             f"(vocabulary of {vocab}); set it to the encoder's [UNK] id")
        dims = {"text": dt, "audio": c.audio_dim, "vision": c.vision_dim}
        kernels = {"text": c.kernel_text, "audio": c.kernel_audio, "vision": c.kernel_vision}
        attn = {"text": c.attn_dropout, "audio": c.attn_dropout_audio, "vision": c.attn_dropout_vision}
        self.text_drop = Dropout(c.text_dropout)
        self.proj = nn.ModuleDict({m: ConvProjection(dims[m], c.dim, kernels[m]) for m in MODALITIES})

        def encoder(layers: int, attn_dropout: float, cross: bool) -> CrossModalTransformer:
            return CrossModalTransformer(c.dim, c.heads, layers, cross=cross, dropout=c.res_dropout,
                                         attn_dropout=attn_dropout, ff_dropout=c.ff_dropout,
                                         embed_dropout=c.embed_dropout)

        self.memory = nn.ModuleDict({m: encoder(c.mem_layers, c.attn_dropout, False) for m in MODALITIES})
        self.cross = nn.ModuleDict({f"{s}_to_{t}": encoder(c.layers, attn[s], True)
                                    for t in MODALITIES for s in MODALITIES if s != t})
        self.generator = nn.ModuleDict({m: nn.Linear(3 * c.dim, dims[m]) for m in MODALITIES})
        hidden = {"text": c.fusion_text_hidden, "audio": c.fusion_audio_hidden, "vision": c.fusion_vision_hidden}
        self.fusion = nn.ModuleDict({m: GatedUtteranceEncoder(3 * c.dim, hidden[m], c.fusion_gru_layers,
                                                              c.fusion_dropout) for m in MODALITIES})
        total = sum(hidden.values())
        self.head = nn.Sequential(nn.LayerNorm(total), nn.Linear(total, c.cls_hidden), nn.LeakyReLU(),
                                  Dropout(c.cls_dropout), nn.Linear(c.cls_hidden, 1))
        self.set_objective(TFRNetObjective(c))

    def _simulate_missing(self, batch) -> tuple[object, dict[str, torch.Tensor]]:
        """(the batch with dropped steps, modality -> bool [B, L] dropped steps) in training; (batch, {}) else."""
        c = self.config
        rates = {"text": c.missing_rate_text, "audio": c.missing_rate_audio, "vision": c.missing_rate_vision}
        if not self.training or not any(rates.values()):
            return batch, {}
        dropped, changes = {}, {}
        for m in MODALITIES:
            if m == "text" and self.text_encoder is not None:
                valid = batch.text_tokens != 0
                dropped[m] = drop_steps(valid, rates[m])
                changes["text_tokens"] = batch.text_tokens.masked_fill(dropped[m], c.text_unk_id)
                continue
            x, mask = batch.features(m)
            dropped[m] = drop_steps(mask, rates[m])
            changes[m] = x * (~dropped[m]).unsqueeze(-1).to(x.dtype)
        return replace(batch, **changes), dropped

    def forward(self, batch) -> ModelOutput:
        full = {"text": text_features(self.text_encoder, batch), "audio": batch.audio, "vision": batch.vision}
        seen, dropped = self._simulate_missing(batch)
        x = dict(full) if not dropped else {"text": text_features(self.text_encoder, seen), "audio": seen.audio,
                                           "vision": seen.vision}
        masks = {m: batch.features(m)[1] for m in MODALITIES}
        if self.text_encoder is not None and masks["text"].shape[1] != x["text"].shape[1]:
            masks["text"] = batch.text_tokens != 0
        x["text"] = self.text_drop(x["text"])
        p = {m: mask_fill(self.proj[m](x[m], masks[m]), masks[m]) for m in MODALITIES}
        h = {}
        for t in MODALITIES:
            parts = [self.memory[t](p[t], masks[t])]
            parts += [self.cross[f"{s}_to_{t}"](p[t], masks[t], p[s], masks[s]) for s in MODALITIES if s != t]
            h[t] = mask_fill(torch.cat(parts, dim=-1), masks[t])
        reps = [self.fusion[m](h[m], masks[m]) for m in MODALITIES]
        aux: dict[str, torch.Tensor] = {}
        for m, d in dropped.items():
            aux.update({f"reconstruction_{m}": self.generator[m](h[m]), f"target_{m}": full[m], f"dropped_{m}": d})
        return ModelOutput(self.head(torch.cat(reps, dim=-1)).squeeze(-1), aux)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """MMSA's groups: a fine-tuned text encoder at ``text_encoder_lr`` (weight decay on its weights, none on its
        biases and LayerNorms), everything else at ``lr`` / ``weight_decay``."""
        c = self.config
        enc = [(n, q) for n, q in self.named_parameters() if n.startswith("text_encoder.") and q.requires_grad]
        no_decay = ("bias", "LayerNorm.bias", "LayerNorm.weight")
        groups = [{"params": [q for n, q in enc if not any(k in n for k in no_decay)], "lr": c.text_encoder_lr,
                   "weight_decay": c.text_encoder_weight_decay, "name": "text_encoder"},
                  {"params": [q for n, q in enc if any(k in n for k in no_decay)], "lr": c.text_encoder_lr,
                   "weight_decay": 0.0, "name": "text_encoder_no_decay"},
                  {"params": [q for n, q in self.named_parameters() if not n.startswith("text_encoder.")
                              and q.requires_grad], "lr": lr, "weight_decay": weight_decay, "name": "other"}]
        return [g for g in groups if g["params"]]
