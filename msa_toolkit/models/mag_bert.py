"""MAG-BERT: BERT with a multimodal adaptation gate (Rahman et al., ACL 2020).

Paper: "Integrating Multimodal Information in Large Pretrained Transformers". Checked against MMSA's
``bert_mag`` (thuiar/MMSA @ a94e65d, ``src/MMSA/models/singleTask/BERT_MAG.py`` and
``trains/singleTask/BERT_MAG.py``; ``benchmarks/parity/parity_mmsa_mag_bert.py``).

The multimodal adaptation gate (MAG) shifts each text step e_i [B, L, Dt] by a displacement from the
acoustic and visual features of the same step::

    g_v = ReLU(W_hv [v_i; e_i]),  g_a = ReLU(W_ha [a_i; e_i])
    h_i = g_v * W_v v_i + g_a * W_a a_i
    alpha_i = min(||e_i|| / ||h_i|| * beta_shift, 1)       (||h_i|| = 0 counts as 1)
    MAG(e_i) = Dropout(LayerNorm(e_i + alpha_i h_i))

With a fine-tuned text encoder (``text_encoder``, a BERT-family model with an ``embeddings`` module and a
pooler) the gate sits between its embeddings and its first layer (MMSA's injection point); the pooled
[CLS] state, Dropout and a Linear give the prediction; the whole encoder, pooler included, is trained.
Without one (precomputed text features, e.g. a dataset without token ids) the gate shifts the feature
steps, which are averaged over the valid steps before the Dropout and Linear: there is no encoder for
the shifted steps to pass through, so this variant is MAG on frozen features, not MAG-BERT.

Word alignment: MAG needs audio and vision per text step. ``av_input="aligned"`` (MMSA's setting, its
aligned_50 features) requires them to have the text's length; ``"pooled"`` gives every step the
modality's average over its valid steps (for unaligned data). An absent modality contributes zeros.
Objective: L1 (MMSA's criterion).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._fields import doc
from ..space import Choice, Float
from ._registry import register_model
from .base import ModelConfig, ModelOutput, MSAModel, RegressionObjective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS
from ..layers import Dropout, build_text_encoder, mask_fill, masked_mean

__all__ = ["MAGBertConfig", "MAGBert", "MAG", "AV_INPUTS"]

#: how audio / vision reach each text step
AV_INPUTS = ("aligned", "pooled")
#: MMSA's word-aligned features: 50 steps per modality
ALIGNED_50 = {"text_len": 50, "audio_len": 50, "vision_len": 50}


@dataclass(frozen=True)
class MAGBertConfig(ModelConfig):
    """MAG-BERT hyper-parameters; defaults = MMSA's CMU-MOSI setting (config_regression.json ``bert_mag``)."""

    beta_shift: float = doc(1.0, "scale of the largest shift relative to the text step's norm (beta_shift)")
    dropout: float = doc(0.3, "dropout after the gate's LayerNorm (dropout_prob)")
    head_dropout: float = doc(0.1, "dropout before the output Linear (BERT's hidden_dropout_prob in MMSA)")
    av_input: str = doc("aligned", "aligned: audio/vision have one step per text step (MMSA) | pooled: every text "
                                   "step gets the modality's average (unaligned data)")
    loss: str = doc("l1", "training criterion: l1 (MMSA) | mse")
    optimizer: str = doc("adam", "optimiser (MMSA: adam, every parameter at one learning rate)")
    lr: float = doc(2e-5, "learning rate (learning_rate)")
    batch_size: int = doc(32, "training batch size")


class MAG(nn.Module):
    """The multimodal adaptation gate: ``forward(e [B, L, Dt], v [B, L, Dv], a [B, L, Da]) -> [B, L, Dt]``."""

    def __init__(self, text_dim: int, audio_dim: int, vision_dim: int, beta_shift: float, dropout: float):
        super().__init__()
        self.gate_v, self.gate_a = nn.Linear(vision_dim + text_dim, text_dim), nn.Linear(audio_dim + text_dim,
                                                                                          text_dim)
        self.shift_v, self.shift_a = nn.Linear(vision_dim, text_dim), nn.Linear(audio_dim, text_dim)
        self.norm, self.drop, self.beta_shift = nn.LayerNorm(text_dim), Dropout(dropout), beta_shift

    def forward(self, e: torch.Tensor, v: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.gate_v(torch.cat([v, e], -1))) * self.shift_v(v) + \
            F.relu(self.gate_a(torch.cat([a, e], -1))) * self.shift_a(a)
        h_norm = h.norm(dim=-1)
        h_norm = torch.where(h_norm == 0, torch.ones_like(h_norm), h_norm)
        alpha = (e.norm(dim=-1) / (h_norm + 1e-6) * self.beta_shift).clamp_max(1.0)
        return self.drop(self.norm(alpha.unsqueeze(-1) * h + e))


#: `msa tune`'s default ranges: MMSA's tuning config has no MAG-BERT entry, so these span the values of its three
#: dataset configs (config_regression.json "bert_mag": learning_rate 1e-5 .. 5e-5, dropout_prob 0.1 .. 0.3)
MAG_BERT_SPACE = {"lr": Float(1e-5, 5e-5, log=True), "dropout": Choice(0.1, 0.2, 0.3)}


@register_model("mag_bert", MAGBertConfig, search_space=MAG_BERT_SPACE,
                presets={
                    "mosi": {**MOSI_INPUTS, **ALIGNED_50},
                    "mosei": {**MOSEI_INPUTS, **ALIGNED_50, "lr": 1e-5, "dropout": 0.2},
                    "sims": {**SIMS_INPUTS, "lr": 5e-5, "dropout": 0.1, "av_input": "pooled"},
                    "tiny": {"av_input": "pooled", "dropout": 0.0, "head_dropout": 0.0},
                },
                summary="MAG-BERT: BERT with a multimodal adaptation gate (Rahman et al., 2020)")
class MAGBert(MSAModel):
    """MAG-BERT. ``forward(batch) -> ModelOutput(prediction [B], aux)``; ``aux``: ``pooled`` [B, Dt] (the
    representation the output Linear reads)."""

    def __init__(self, config: MAGBertConfig):
        super().__init__(config)
        c = config
        if c.av_input not in AV_INPUTS:
            raise ValueError(f"av_input must be one of {AV_INPUTS}, got {c.av_input!r}")
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        if self.text_encoder is not None:
            if not isinstance(getattr(self.text_encoder.model, "embeddings", None), nn.Module) or \
                    getattr(self.text_encoder.model, "pooler", None) is None:
                raise ValueError(f"MAG-BERT needs a BERT-family text encoder with embeddings and a pooler; "
                                 f"{c.text_encoder!r} has not both")
            self.text_encoder.model.pooler.requires_grad_(True)  # MAG-BERT reads the pooled [CLS] state
        self.mag = MAG(dt, c.audio_dim, c.vision_dim, c.beta_shift, c.dropout)
        self.head = nn.Sequential(Dropout(c.head_dropout), nn.Linear(dt, 1))
        self.set_objective(RegressionObjective(c.loss))

    def _per_step(self, batch, modality: str, length: int) -> torch.Tensor:
        """[B, length, D]: the modality's features per text step (see ``av_input``); zeros when absent."""
        x, mask = batch.features(modality)
        if not bool(mask.any()):
            return x.new_zeros(x.shape[0], length, x.shape[2])
        if self.config.av_input == "pooled":
            return masked_mean(x, mask).unsqueeze(1).expand(-1, length, -1)
        if x.shape[1] != length:
            raise ValueError(f"MAG-BERT with av_input='aligned' needs word-aligned {modality} (one step per text "
                             f"step): got {x.shape[1]} {modality} steps for {length} text steps; use aligned "
                             "features or set model.av_input=pooled")
        return mask_fill(x, mask)

    def forward(self, batch) -> ModelOutput:
        if self.text_encoder is None:
            e, mask = batch.text, batch.text_mask
            v, a = (self._per_step(batch, m, e.shape[1]) for m in ("vision", "audio"))
            pooled = masked_mean(self.mag(e, v, a), mask)
        else:
            if batch.text_tokens is None:
                raise ValueError("this model fine-tunes a text encoder (config.text_encoder is set) but the batch "
                                 "has no text_tokens; build the dataset with token ids")
            tokens = batch.text_tokens
            v, a = (self._per_step(batch, m, tokens.shape[1]) for m in ("vision", "audio"))
            bert = self.text_encoder.model
            hook = bert.embeddings.register_forward_hook(lambda module, args, out: self.mag(out, v, a))
            mask = batch.text_mask if batch.text_mask.shape == tokens.shape else tokens != 0
            try:
                pooled = bert(input_ids=tokens, attention_mask=mask.long()).pooler_output
            finally:
                hook.remove()
        return ModelOutput(self.head(pooled).squeeze(-1), {"pooled": pooled})
