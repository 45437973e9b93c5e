"""LF-DNN: late fusion of utterance-level modality networks (Williams et al., "Recognizing Emotions in Video
Using Multimodal DNN Feature Fusion", Challenge-HML 2018; the LF-DNN baseline of MMSA's benchmark).

Checked against MMSA's ``models/singleTask/LF_DNN.py`` (thuiar/MMSA @ a94e65d) by
``benchmarks/parity/parity_mmsa_lf_dnn.py``; presets from MMSA's ``config/config_regression.json`` ("lf_dnn").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._fields import doc
from ..layers import Dropout
from ..space import Choice, Float
from ._registry import register_model
from ._utterance import SubNetsConfig, SubNetsModel, mmsa_subnets
from .base import ModelOutput, RegressionObjective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS

__all__ = ["LFDNNConfig", "LFDNN"]


@dataclass(frozen=True)
class LFDNNConfig(SubNetsConfig):
    """Late-fusion DNN (base ``dropout`` unused: each part has its own)."""

    post_fusion_dim: int = doc(128, "width of the two post-fusion hidden layers")
    post_fusion_dropout: float = doc(0.2, "dropout on the concatenated modality representations")
    lr: float = doc(1e-3, "learning rate")
    weight_decay: float = doc(1e-2, "weight decay (Adam)")
    batch_size: int = doc(128, "training batch size")


def _mmsa(hidden: tuple[int, int, int], text_out: int, post: int, dropouts: tuple[float, ...], batch: int,
          lr: float, wd: float) -> dict:
    """A preset from MMSA's lf_dnn entry: hidden_dims (text, audio, video), dropouts (audio, video, text, post)."""
    return {**mmsa_subnets(hidden, text_out, dropouts), "post_fusion_dim": post, "post_fusion_dropout": dropouts[3],
            "batch_size": batch, "lr": lr, "weight_decay": wd}


#: `msa tune`'s default ranges: MMSA's LF-DNN tuning config (config_tune.json "lf_dnn"): hidden_dims as per-modality
#: choices, text_out, post_fusion_dim, batch size and weight decay as there, learning rates as a log range over
#: theirs; dropouts (audio, video, text, post-fusion): the audio, video and post-fusion values (MMSA's one-layer
#: TextSubNet zeroes the text one)
LF_DNN_SPACE = {"text_hidden": Choice(64, 128, 256), "audio_hidden": Choice(16, 32),
                "vision_hidden": Choice(64, 128, 256), "text_out": Choice(32, 64, 128, 256),
                "post_fusion_dim": Choice(16, 32, 64, 128), "audio_dropout": Choice(0.2, 0.3, 0.4),
                "vision_dropout": Choice(0.2, 0.3, 0.4), "post_fusion_dropout": Choice(0.2, 0.3, 0.4, 0.5),
                "batch_size": Choice(32, 64, 128), "lr": Float(5e-4, 5e-3, log=True),
                "weight_decay": Choice(0.0, 1e-3, 5e-3, 1e-2)}


@register_model("lf_dnn", LFDNNConfig, search_space=LF_DNN_SPACE, presets={
    # MMSA config_regression.json "lf_dnn".datasetParams.<dataset>
    "mosi": {**MOSI_INPUTS, **_mmsa((128, 16, 128), 256, 128, (0.2,) * 4, 128, 1e-3, 1e-2)},
    "mosei": {**MOSEI_INPUTS, **_mmsa((128, 32, 128), 128, 128, (0.2,) * 4, 64, 2e-3, 1e-3)},
    "sims": {**SIMS_INPUTS, **_mmsa((128, 32, 128), 256, 32, (0.3, 0.3, 0.3, 0.5), 128, 5e-3, 5e-3)},
    "tiny": {"text_hidden": 8, "text_out": 8, "audio_hidden": 4, "vision_hidden": 4, "post_fusion_dim": 8,
             "audio_dropout": 0.0, "vision_dropout": 0.0, "text_dropout": 0.0, "post_fusion_dropout": 0.0},
}, summary="Late-fusion DNN over utterance-level modality networks (MMSA's LF-DNN)")
class LFDNN(SubNetsModel):
    """LF-DNN: TFN's modality subnetworks, concatenated, then a 3-layer MLP.

    z_t = TextSubNet(text) [B, text_out], z_a / z_v = UtteranceSubNet(masked mean) [B, hidden];
    prediction = MLP(Dropout([z_t; z_a; z_v])) with two ReLU layers of ``post_fusion_dim``.

    Deviations from MMSA (``models/singleTask/LF_DNN.py``): LayerNorm instead of BatchNorm in the audio/visual
    subnetworks (batches of one train); masked means and the LSTM state at the last valid step; the
    concatenation order text, audio, vision (MMSA: audio, video, text; the same function up to a permutation of
    the first layer's columns); the text dropout acts (MMSA's one-layer TextSubNet zeroes it).
    """

    def __init__(self, config: LFDNNConfig):
        super().__init__(config)
        c = config
        fused = c.text_out + c.audio_hidden + c.vision_hidden
        self.post = nn.Sequential(Dropout(c.post_fusion_dropout), nn.Linear(fused, c.post_fusion_dim), nn.ReLU(),
                                  nn.Linear(c.post_fusion_dim, c.post_fusion_dim), nn.ReLU(),
                                  nn.Linear(c.post_fusion_dim, 1))
        self.set_objective(RegressionObjective(c.loss))

    def forward(self, batch) -> ModelOutput:
        z_t, z_a, z_v = self.encode(batch)
        pred = self.post(torch.cat([z_t, z_a, z_v], dim=-1)).squeeze(-1)
        return ModelOutput(pred, {"z_text": z_t, "z_audio": z_a, "z_vision": z_v})
