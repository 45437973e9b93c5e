"""LMF: Low-rank Multimodal Fusion (Liu et al., ACL 2018, "Efficient Low-rank Multimodal Fusion with
Modality-Specific Factors").

Checked against MMSA's ``models/singleTask/LMF.py`` (thuiar/MMSA @ a94e65d) by
``benchmarks/parity/parity_mmsa_lmf.py``; presets from MMSA's ``config/config_regression.json`` ("lmf").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._fields import doc
from ..space import Choice, Float, Int
from ._registry import register_model
from ._utterance import SubNetsConfig, SubNetsModel, mmsa_subnets
from .base import ModelOutput, RegressionObjective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS

__all__ = ["LMFConfig", "LMF"]


@dataclass(frozen=True)
class LMFConfig(SubNetsConfig):
    """Low-rank Multimodal Fusion (base ``dropout`` unused: each part has its own)."""

    text_out: int = doc(64, "output size of the language subnetwork (MMSA: text_hidden // 2)")
    audio_dropout: float = doc(0.3, "dropout on the averaged audio input")
    vision_dropout: float = doc(0.3, "dropout on the averaged visual input")
    text_dropout: float = doc(0.3, "dropout on the language LSTM's last state (MMSA's one-layer TextSubNet "
                                   "sets it to 0, so the reference recipe does)")
    rank: int = doc(3, "rank r of the low-rank factors")
    factor_lr: float = doc(1e-3, "learning rate of the three modality factors (the other parameters use lr)")
    train_fusion_weights: bool = doc(True, "train the rank weights and the output bias; MMSA's optimiser leaves "
                                           "them out (parameters()[5:]), so they keep their initial values in "
                                           "the reference recipe (False)")
    lr: float = doc(1e-3, "learning rate of every parameter but the factors")
    weight_decay: float = doc(5e-3, "weight decay of both parameter groups")
    batch_size: int = doc(64, "training batch size")


def _mmsa(hidden: tuple[int, int, int], dropouts: tuple[float, ...], rank: int, batch: int, lr: float,
          factor_lr: float, wd: float) -> dict:
    """A preset from MMSA's lmf entry: hidden_dims (text, audio, video), dropouts (audio, video, text, post); the
    post-fusion dropout is never applied by MMSA's LMF (its layer is built, not called), so it has no field."""
    return {**mmsa_subnets(hidden, hidden[0] // 2, dropouts), "rank": rank, "batch_size": batch, "lr": lr,
            "factor_lr": factor_lr, "weight_decay": wd}


#: `msa tune`'s default ranges: MMSA's LMF tuning config (config_tune.json "lmf"): hidden_dims as per-modality
#: choices, rank, batch size and weight decay as there, the learning rates (learning_rate, factor_lr) as log ranges
#: over theirs; text_out is text_hidden // 2 in MMSA, here its own choice over those values; of the dropouts
#: (audio, video, text, post-fusion) the audio and video ones (MMSA's TextSubNet zeroes the text one, and LMF never
#: applies the post-fusion one)
LMF_SPACE = {"text_hidden": Choice(64, 128, 256), "audio_hidden": Choice(16, 32), "vision_hidden": Choice(64, 128, 256),
             "text_out": Choice(32, 64, 128), "audio_dropout": Choice(0.2, 0.3, 0.4),
             "vision_dropout": Choice(0.2, 0.3, 0.4), "rank": Int(3, 6), "batch_size": Choice(32, 64, 128),
             "lr": Float(5e-4, 5e-3, log=True), "factor_lr": Float(1e-4, 1e-3, log=True),
             "weight_decay": Choice(0.0, 1e-4, 1e-3, 5e-3)}


@register_model("lmf", LMFConfig, search_space=LMF_SPACE, presets={
    # MMSA config_regression.json "lmf".datasetParams.<dataset>
    "mosi": {**MOSI_INPUTS, **_mmsa((128, 16, 128), (0.3,) * 4, 3, 64, 1e-3, 1e-3, 5e-3)},
    "mosei": {**MOSEI_INPUTS, **_mmsa((128, 16, 128), (0.2,) * 4, 4, 32, 1e-3, 1e-3, 1e-3)},
    "sims": {**SIMS_INPUTS, **_mmsa((64, 16, 64), (0.2,) * 4, 4, 64, 2e-3, 5e-4, 5e-3)},
    "tiny": {"text_hidden": 16, "text_out": 8, "audio_hidden": 8, "vision_hidden": 8, "rank": 8,
             "audio_dropout": 0.0, "vision_dropout": 0.0, "text_dropout": 0.0},
}, summary="Low-rank Multimodal Fusion (Liu et al., 2018)")
class LMF(SubNetsModel):
    """LMF: TFN's subnetworks, then the fusion of ``[1; z_m]`` through rank-r modality factors.

    z_t = TextSubNet(text) [B, text_out], z_a / z_v = UtteranceSubNet(masked mean) [B, hidden]. For each
    modality ``f_m = [1; z_m] W_m`` with W_m [r, d_m + 1, 1] gives [r, B, 1]; the prediction is
    ``w^T (f_t * f_a * f_v) + b`` with rank weights w [1, r] (the reference code's weighted sum over the rank;
    the paper sums with weight 1). Equal to a TFN whose fusion weight tensor has rank r, without forming it.

    Deviations from MMSA (``models/singleTask/LMF.py``): LayerNorm instead of BatchNorm in the audio/visual
    subnetworks (batches of one train); masked means and the LSTM state at the last valid step (MMSA averages
    over the padded length and runs the LSTM over padding); the text dropout acts (MMSA's one-layer
    TextSubNet zeroes it; the reference recipe sets ``text_dropout=0``).
    """

    def __init__(self, config: LMFConfig):
        super().__init__(config)
        c = config
        self.audio_factor = nn.Parameter(torch.empty(c.rank, c.audio_hidden + 1, 1))
        self.vision_factor = nn.Parameter(torch.empty(c.rank, c.vision_hidden + 1, 1))
        self.text_factor = nn.Parameter(torch.empty(c.rank, c.text_out + 1, 1))
        self.fusion_weights = nn.Parameter(torch.empty(1, c.rank))
        self.fusion_bias = nn.Parameter(torch.zeros(1, 1))
        for p in (self.audio_factor, self.vision_factor, self.text_factor, self.fusion_weights):
            nn.init.xavier_normal_(p)
        if not c.train_fusion_weights:
            self.fusion_weights.requires_grad_(False)
            self.fusion_bias.requires_grad_(False)
        self.set_objective(RegressionObjective(c.loss))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """The factors at ``factor_lr``, every other trainable parameter at ``lr`` (MMSA's two Adam groups)."""
        factors = [self.audio_factor, self.vision_factor, self.text_factor]
        ids = {id(p) for p in factors}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": factors, "lr": self.config.factor_lr}, {"params": rest, "lr": lr}]

    def forward(self, batch) -> ModelOutput:
        z_t, z_a, z_v = self.encode(batch)
        one = z_t.new_ones(z_t.shape[0], 1)
        fused = None
        for z, factor in ((z_a, self.audio_factor), (z_v, self.vision_factor), (z_t, self.text_factor)):
            f = torch.matmul(torch.cat([one, z], dim=1), factor)  # [r, B, 1]
            fused = f if fused is None else fused * f
        pred = torch.matmul(self.fusion_weights, fused.permute(1, 0, 2)).squeeze(-1) + self.fusion_bias  # [B, 1]
        return ModelOutput(pred.squeeze(-1), {"z_text": z_t, "z_audio": z_a, "z_vision": z_v})
