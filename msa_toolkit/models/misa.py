"""MISA: modality-invariant and -specific representations (Hazarika et al., ACM MM 2020).

Paper: "MISA: Modality-Invariant and -Specific Representations for Multimodal Sentiment Analysis". Checked
against MMSA (thuiar/MMSA @ a94e65d, ``src/MMSA/models/singleTask/MISA.py`` and
``trains/singleTask/MISA.py``; ``benchmarks/parity/parity_mmsa_misa.py``).

Architecture (batch B, width d = ``hidden``)::

    text:   masked mean of the BERT states                                   -> u_t [B, Dt]
    audio/vision (D_m-d): bidirectional LSTM (width D_m) over the valid steps, LayerNorm of its states,
            a second bidirectional LSTM; the final states [h1_fwd; h2_fwd; h1_bwd; h2_bwd] -> u_m [B, 4 D_m]
    projection:   o_m = LayerNorm(ReLU(Linear(u_m)))                           [B, d]
    private:      p_m = Sigmoid(Linear_m(o_m));  shared: s_m = Sigmoid(Linear(o_m)) (one Linear for all m)
    reconstruct:  r_m = Linear_m(p_m + s_m)
    fusion: one post-norm transformer layer (2 heads, feed-forward 2048, dropout 0.1) over the six tokens
            [p_t, p_v, p_a, s_t, s_v, s_a], concatenated [B, 6d] -> Linear(6d, 3d), Dropout, ReLU, Linear -> [B]

Objective (:class:`MISAObjective`): ``MSE + diff_weight * L_diff + sim_weight * L_sim + recon_weight * L_recon``
with ``L_sim`` the central moment discrepancy (5 moments) between the shared representations, averaged
over the three pairs; ``L_diff`` the soft orthogonality of each private/shared pair and of the three
private pairs (summed, six terms); ``L_recon`` the MSE between r_m and o_m averaged over the modalities.
In eval mode the objective is the MSE alone (MMSA's validation loss).

Deviations from MMSA: the audio/vision LSTMs read each modality's own valid steps (MMSA uses the text
lengths for every modality, which truncates unaligned audio/vision to the text length); the
shared/private discriminator MMSA builds but never uses in a loss, and the adversarial discriminator it
builds only when ``use_cmd_sim`` is off (its loss is undefined in MMSA's trainer), are not built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._fields import doc
from ..space import Choice, Float
from ._registry import register_model
from .base import LossOutput, ModelConfig, ModelOutput, MSAModel, Objective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS
from ..layers import EncoderLayer, MLPHead, SequenceLSTM, build_text_encoder, masked_mean, text_features
from ..layers.losses import central_moment_discrepancy, regression_loss, soft_orthogonality

__all__ = ["MISAConfig", "MISA", "MISAObjective"]

#: modality order of MISA's fusion tokens and losses
ORDER = ("text", "vision", "audio")


@dataclass(frozen=True)
class MISAConfig(ModelConfig):
    """MISA hyper-parameters; defaults = MMSA's CMU-MOSI setting (config_regression.json ``misa``)."""

    hidden: int = doc(128, "width of the projected, private and shared representations (hidden_size)")
    dropout: float = doc(0.2, "dropout of the prediction head (dropout)")
    fusion_heads: int = doc(2, "attention heads of the fusion transformer layer")
    fusion_ff_dim: int = doc(2048, "feed-forward width of the fusion transformer layer (PyTorch's default)")
    fusion_dropout: float = doc(0.1, "attention, residual and feed-forward dropout of the fusion layer")
    diff_weight: float = doc(0.1, "weight of the difference (soft orthogonality) loss")
    sim_weight: float = doc(0.3, "weight of the similarity (CMD) loss")
    recon_weight: float = doc(1.0, "weight of the reconstruction loss")
    cmd_moments: int = doc(5, "central moments compared by the similarity loss")
    loss: str = doc("mse", "prediction criterion: mse (MMSA) | l1")
    optimizer: str = doc("adam", "optimiser (MMSA: adam, every parameter at one learning rate)")
    lr: float = doc(1e-4, "learning rate (learning_rate)")
    batch_size: int = doc(16, "training batch size (MMSA MOSI: 16)")
    grad_clip_value: float = doc(0.8, "clip each gradient value (grad_clip)")


class _TwoLayerBiLSTM(nn.Module):
    """MISA's audio/vision encoder: BiLSTM, LayerNorm of its states, BiLSTM; [B, L, D] -> [B, 4 D]."""

    def __init__(self, dim: int):
        super().__init__()
        self.rnn1, self.norm, self.rnn2 = SequenceLSTM(dim, dim, bidirectional=True), nn.LayerNorm(2 * dim), \
            SequenceLSTM(2 * dim, dim, bidirectional=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        states, h1 = self.rnn1(x, mask)
        _, h2 = self.rnn2(self.norm(states), mask)
        return torch.cat([h1, h2], dim=2).permute(1, 0, 2).reshape(x.shape[0], -1)


#: `msa tune`'s default ranges: MMSA's MISA tuning config (config_tune.json "misa"): batch size, hidden_size
#: (hidden; even, for the 2 fusion heads), dropout, the diff / sim / recon loss weights and weight decay as there,
#: learning rates as a log range over theirs, grad_clip (-1 = off there) as grad_clip_value 0 / 0.8 / 1.0;
#: reverse_grad_weight and sp_weight weigh losses MMSA's CMD variant (use_cmd_sim) does not train, so are not here
MISA_SPACE = {"batch_size": Choice(16, 32, 64), "lr": Float(1e-4, 1e-3, log=True), "hidden": Choice(64, 128, 256),
              "dropout": Choice(0.0, 0.2, 0.5), "diff_weight": Choice(0.1, 0.3, 0.5),
              "sim_weight": Choice(0.5, 0.8, 1.0), "recon_weight": Choice(0.5, 0.8, 1.0),
              "grad_clip_value": Choice(0.0, 0.8, 1.0),
              "weight_decay": Choice(0.0, 5e-5, 2e-3)}


@register_model("misa", MISAConfig, search_space=MISA_SPACE,
                presets={
                    "mosi": {**MOSI_INPUTS},
                    "mosei": {**MOSEI_INPUTS, "batch_size": 64, "dropout": 0.5, "diff_weight": 0.3,
                              "sim_weight": 0.8},
                    "sims": {**SIMS_INPUTS, "batch_size": 64, "dropout": 0.0, "diff_weight": 0.3,
                             "sim_weight": 1.0, "recon_weight": 0.8, "grad_clip_value": 1.0},
                    "tiny": {"hidden": 32, "fusion_ff_dim": 64, "dropout": 0.0},
                },
                summary="MISA: modality-invariant and -specific representations (Hazarika et al., 2020)")
class MISA(MSAModel):
    """MISA. ``forward(batch) -> ModelOutput(prediction [B], aux)``; ``aux``: ``projected_<m>``,
    ``private_<m>``, ``shared_<m>``, ``reconstructed_<m>`` [B, hidden] for m in text, vision, audio."""

    def __init__(self, config: MISAConfig):
        super().__init__(config)
        c, d = config, config.hidden
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        self.encoders = nn.ModuleDict({"vision": _TwoLayerBiLSTM(c.vision_dim),
                                       "audio": _TwoLayerBiLSTM(c.audio_dim)})
        utterance = {"text": dt, "vision": 4 * c.vision_dim, "audio": 4 * c.audio_dim}
        self.project = nn.ModuleDict({m: nn.Sequential(nn.Linear(utterance[m], d), nn.ReLU(), nn.LayerNorm(d))
                                      for m in ORDER})
        self.private = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, d), nn.Sigmoid()) for m in ORDER})
        self.shared = nn.Sequential(nn.Linear(d, d), nn.Sigmoid())
        self.reconstruct = nn.ModuleDict({m: nn.Linear(d, d) for m in ORDER})
        self.fusion = EncoderLayer(d, c.fusion_heads, c.fusion_ff_dim, dropout=c.fusion_dropout,
                                   attn_dropout=c.fusion_dropout)
        self.head = MLPHead(6 * d, 3 * d, 1, 2, c.dropout)
        self.set_objective(MISAObjective(c))

    def forward(self, batch) -> ModelOutput:
        text = text_features(self.text_encoder, batch)
        u = {"text": masked_mean(text, batch.text_mask),
             **{m: self.encoders[m](*batch.features(m)) for m in ("vision", "audio")}}
        aux = {}
        for m in ORDER:
            o = aux[f"projected_{m}"] = self.project[m](u[m])
            p, s = aux[f"private_{m}"], aux[f"shared_{m}"] = self.private[m](o), self.shared(o)
            aux[f"reconstructed_{m}"] = self.reconstruct[m](p + s)
        tokens = torch.stack([aux[f"{kind}_{m}"] for kind in ("private", "shared") for m in ORDER], dim=1)
        h = self.fusion(tokens, tokens.new_ones(tokens.shape[:2], dtype=torch.bool))
        return ModelOutput(self.head(h.flatten(1)).squeeze(-1), aux)


class MISAObjective(Objective):
    """Prediction loss + weighted difference, similarity (CMD) and reconstruction losses (see the module
    docstring). Components: ``prediction_<loss>``, ``difference``, ``similarity``, ``reconstruction``
    (each already weighted)."""

    def __init__(self, config: MISAConfig):
        super().__init__()
        self.config = config

    def forward(self, output: ModelOutput, batch) -> LossOutput:
        c, a = self.config, output.aux
        pred = regression_loss(output.prediction, batch.label, c.loss)
        if not self.training:
            return LossOutput(pred, {f"prediction_{c.loss}": pred})
        p = {m: a[f"private_{m}"] for m in ORDER}
        s = {m: a[f"shared_{m}"] for m in ORDER}
        pairs = [(p[m], s[m]) for m in ("text", "vision", "audio")] + \
            [(p["audio"], p["text"]), (p["audio"], p["vision"]), (p["text"], p["vision"])]
        diff = sum(soft_orthogonality(x, y, detach_norm=True) for x, y in pairs)
        sim = sum(central_moment_discrepancy(s[x], s[y], c.cmd_moments)
                  for x, y in (("text", "vision"), ("text", "audio"), ("audio", "vision"))) / 3.0
        recon = sum(F.mse_loss(a[f"reconstructed_{m}"], a[f"projected_{m}"]) for m in ORDER) / 3.0
        parts = {f"prediction_{c.loss}": pred, "difference": c.diff_weight * diff,
                 "similarity": c.sim_weight * sim, "reconstruction": c.recon_weight * recon}
        return LossOutput(sum(parts.values()), parts)
