"""EF-LSTM: early fusion of the word-aligned modalities into one LSTM (the early-fusion baseline of Cambria et
al., "Benchmarking Multimodal Sentiment Analysis", CICLing 2017, and Williams et al., Challenge-HML 2018).

Checked against MMSA's ``models/singleTask/EF_LSTM.py`` (thuiar/MMSA @ a94e65d) by
``benchmarks/parity/parity_mmsa_ef_lstm.py``; presets from MMSA's ``config/config_regression.json`` ("ef_lstm").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._fields import doc
from ..layers import (Dropout, StepBatchNorm, align_steps, build_text_encoder, last_valid, mask_fill, run_rnn,
                      text_features, text_timeline)
from ..space import Choice, Float, Int
from ._registry import register_model
from .base import ModelConfig, ModelOutput, MSAModel, RegressionObjective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS

__all__ = ["EFLSTMConfig", "EFLSTM"]

#: input norms of the fused sequence
INPUT_NORMS = ("batch", "none")


@dataclass(frozen=True)
class EFLSTMConfig(ModelConfig):
    """Early-fusion LSTM over the concatenated, word-aligned text, audio and visual features."""

    hidden: int = doc(128, "LSTM hidden size (also the width of the Linear after it)")
    layers: int = doc(4, "stacked LSTM layers")
    dropout: float = doc(0.5, "dropout between the LSTM layers, on its last state and after the hidden Linear")
    input_norm: str = doc("batch", "norm of the fused input: batch = batch norm with the time steps as channels "
                                   "(MMSA's nn.BatchNorm1d(seq_len)), statistics over valid steps | none")
    loss: str = doc("l1", "training criterion: l1 | mse")
    lr: float = doc(1e-3, "learning rate")
    weight_decay: float = doc(5e-3, "weight decay (Adam)")
    batch_size: int = doc(32, "training batch size")


def _mmsa(hidden: int, layers: int, dropout: float, batch: int, lr: float, wd: float) -> dict:
    """A preset from MMSA's ef_lstm entry."""
    return {"hidden": hidden, "layers": layers, "dropout": dropout, "batch_size": batch, "lr": lr,
            "weight_decay": wd}


#: `msa tune`'s default ranges: MMSA's EF-LSTM tuning config (config_tune.json "ef_lstm"): hidden size
#: (hidden_dims), layers (num_layers), dropout, batch size and weight decay as there, learning rates as a log range
#: over theirs
EF_LSTM_SPACE = {"hidden": Choice(16, 32, 64, 128, 256), "layers": Int(2, 4), "dropout": Choice(0.2, 0.3, 0.4, 0.5),
                 "batch_size": Choice(32, 64, 128), "lr": Float(5e-4, 5e-3, log=True),
                 "weight_decay": Choice(0.0, 1e-4, 1e-3, 5e-3)}


@register_model("ef_lstm", EFLSTMConfig, search_space=EF_LSTM_SPACE, presets={
    # MMSA config_regression.json "ef_lstm".datasetParams.<dataset>; MMSA trains it on word-aligned features
    # (need_data_aligned), text_len steps
    "mosi": {**MOSI_INPUTS, **_mmsa(128, 4, 0.5, 32, 1e-3, 5e-3)},
    "mosei": {**MOSEI_INPUTS, **_mmsa(256, 2, 0.4, 128, 5e-3, 1e-4)},
    "sims": {**SIMS_INPUTS, **_mmsa(32, 3, 0.5, 128, 5e-4, 1e-3)},
    "tiny": {"hidden": 8, "layers": 2, "dropout": 0.0},
}, summary="Early-fusion LSTM over word-aligned modalities (MMSA's EF-LSTM)")
class EFLSTM(MSAModel):
    """EF-LSTM: ``[text; audio; vision]`` per aligned step -> input norm -> stacked LSTM -> MLP.

    Audio and vision are aligned onto the text's valid steps (``layers.text_timeline`` and ``align_steps``: the
    identity for word-aligned features of the text's length, averaging or repetition otherwise), concatenated
    to [B, Lt, Dt + Da + Dv], normalised, run through the LSTM; its top state at the last valid step goes
    through Dropout, Linear+ReLU, Dropout, Linear to the prediction.

    Deviations from MMSA (``models/singleTask/EF_LSTM.py``): the batch norm counts valid steps only and a batch
    may be shorter than ``text_len``; the LSTM state at the last valid step (MMSA: the last padded step);
    unaligned inputs are aligned per sample on their valid steps (MMSA's AlignSubNet pools the padded length).
    """

    def __init__(self, config: EFLSTMConfig):
        super().__init__(config)
        c = config
        if c.input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {c.input_norm!r}")
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        self.norm = StepBatchNorm(c.text_len) if c.input_norm == "batch" else None
        self.lstm = nn.LSTM(dt + c.audio_dim + c.vision_dim, c.hidden, num_layers=c.layers,
                            dropout=c.dropout if c.layers > 1 else 0.0, batch_first=True)
        self.drop = Dropout(c.dropout)
        self.linear = nn.Linear(c.hidden, c.hidden)
        self.out = nn.Linear(c.hidden, 1)
        self.set_objective(RegressionObjective(c.loss))

    def forward(self, batch) -> ModelOutput:
        timeline = text_timeline(batch.text_mask)
        text = mask_fill(text_features(self.text_encoder, batch), batch.text_mask)
        fused = torch.cat([text, align_steps(batch.audio, batch.audio_mask, timeline),
                           align_steps(batch.vision, batch.vision_mask, timeline)], dim=-1)
        if self.norm is not None:
            fused = self.norm(fused, timeline)
        states, _ = run_rnn(self.lstm, fused)
        h = self.drop(last_valid(states, timeline))
        h = self.drop(torch.relu(self.linear(h)))
        return ModelOutput(self.out(h).squeeze(-1), {"representation": h})
