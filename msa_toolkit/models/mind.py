"""MInD: Multimodal Information Disentanglement (Dai et al., arXiv 2401.11818).

Pipeline (B batch, d = ``config.d_model``)::

    text [B, Lt, Dt] -> (optional fine-tuned BERT) -> masked mean -> Linear-ReLU-LayerNorm     -> u_t [B, d]
    audio [B, La, Da], vision [B, Lv, Dv] -> Conv1d(k=1) -> sinusoidal positions
        -> pre-norm transformer (3 layers, 4 heads) -> LayerNorm -> last valid step               -> u_a, u_v [B, d]
           (the final layer computes only that step: EncoderLayer.forward_last, exact)
    shared encoder E_c (Linear-act-LayerNorm-Dropout-Linear-act, one for all modalities):
        invariant  c_m = E_c(u_m)                                                               [B, d]
    private encoders E_m (same shape, one per modality):
        specific   p_m = E_m(u_m)                                                               [B, d]
        noise      n_m = E_m(g_m),  g_m ~ N(0, I) of u_m's shape                                [B, d]
    fusion: Linear([c_t; p_t; c_a; p_a; c_v; p_v]) -> fusion_dim
    head:   Linear(F, F/2) - Dropout - act - Linear(F/2, 1)                                    -> prediction [B]

Objective (:class:`MInDObjective`; every term a named, weighted component, one optimiser):

* ``prediction``: L1 (MOSI) or MSE + L1 on clamped values (MOSEI), as the authors train.
* ``info`` (α): Jensen–Shannon MI estimator (Deep InfoMax form, −MI = E_P[softplus(−T)] +
  E_{P⊗P}[softplus(T')]) with one statistics network T (MLP 512-512-1) per pair, *maximising*
  MI between (a) the concatenation [u_t; u_a; u_v] and each invariant c_m, (b) each u_m and its
  specific p_m, (c) each Gaussian input g_m and its noise component n_m. Marginal samples pair
  x with the batch rolled by one. Averaged over modalities, summed over (a)-(c).
* ``consistency`` (β): Barlow Twins between the invariant components of every modality pair,
  batch-standardised features, on-diagonal (1 − C_ii)² + (1/d) · off-diagonal C_ij²
  (the off-diagonal weight λ = 1/embedding dim), averaged over the 3 pairs.
* ``difference`` (γ): HSIC with inner-product (linear) kernels, (1/12) Σ over the pairs
  (c_m, p_m), (p_m, p_m') and (1/12) Σ over (c_m, n_m), (p_m, n_m) — the authors' 12 pairs.
* ``reconstruction`` (λ): MSE between u_m and a per-modality decoder (Linear 3d→256-act-Linear)
  applied to [c_m; p_m; n_m], averaged over modalities.
* ``cyclic``: cross-reconstruction through gradient reversal (DiCyR): [c_m; p_m] predicted from
  GRL(n_m) and n_m from GRL([c_m; p_m]) by small decoders, MSE, (1/6) Σ. The decoders learn to
  predict, the encoders are pushed (reversed gradient) to make features and noise mutually
  unpredictable.
* ``noise_prediction``: a head predicts the sentiment label from GRL([n_t; n_a; n_v]); the
  reversed gradient makes the noise components carry no label information.

The gradient-reversal scale follows the authors' DANN schedule 2 / (1 + exp(−10 p)) − 1 with
p = step / ``grl_warmup_steps`` (capped at 1), scaled by ``grl_alpha``; the step counter is a
persistent buffer advanced in ``after_step`` (a roll-back to the best weights keeps it counting, as the
reference's global step). ``grl_warmup_steps = 0`` gives a constant
``grl_alpha`` (the authors' "1" option).

Deviations from the paper / the authors' public code:

* Audio/vision "last step" pooling takes the last *valid* step of each row (the reference takes
  the last position of the padded, conv-padded sequence); the reference's Conv1d padding of one
  step on each side is dropped.
* Barlow Twins standardises with batch statistics directly instead of a BatchNorm layer, so
  batches of one work (a single sample gives a constant, finite loss with no gradient); HSIC is
  0 for a batch of one (the (n−1)² normaliser is undefined).
* Absent modalities (all-False masks) give u_m = 0; all terms stay finite. Nothing is masked out
  of the auxiliary losses (the reference never sees absent modalities).
* The noise-prediction loss uses L1 for ``prediction_loss="l1"`` and MSE for ``"mse+l1"``
  (the reference uses its first prediction criterion for it, i.e. MSE on MOSEI).
* The authors' rollback early stopping with an exponential LR decay of 0.5 on each rollback
  is the generic trainer's ``rollback_*`` settings, used by ``--recipe reference``
  (``training/recipes.py``); the toolkit recipe keeps ``scheduler="plateau"``.
* Precomputed (frozen) text features are the default; set ``text_encoder`` to fine-tune a
  transformers encoder inside the model as the authors do with BERT.
* In eval mode the noise inputs g_m come from a seeded generator (:func:`gaussian_input`), not the
  global RNG: evaluation losses are reproducible and evaluating leaves the training draws alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._fields import doc
from ..data.batch import Batch
from ..spec import MODALITIES
from ._registry import register_model
from .base import LossOutput, ModelConfig, ModelOutput, MSAModel, Objective
from ..layers import (ACTIVATIONS, Dropout, EncoderLayer, SinusoidalPositionalEncoding, activation, build_text_encoder,
                      grad_reverse, last_valid, masked_mean, text_features)
from ..layers.losses import barlow_twins_loss, hsic, jsd_mi
from .presets import MOSEI_ALIGNED_INPUTS, MOSI_ALIGNED_INPUTS
from ..space import Choice, Float


@dataclass(frozen=True)
class MInDConfig(ModelConfig):
    """MInD configuration (defaults = the authors' code defaults; presets = their MOSI/MOSEI scripts)."""

    d_model: int = doc(256, "embedding width d of the backbones and of the invariant / specific / noise components")
    backbone_heads: int = doc(4, "attention heads of the audio/vision transformer backbones")
    backbone_layers: int = doc(3, "layers of the audio/vision transformer backbones")
    backbone_attn_dropout: float = doc(0.5, "dropout on the attention weights of the audio/vision backbones")
    backbone_embed_dropout: float = doc(0.2, "dropout on the backbones' input embedding (after positions)")
    backbone_relu_dropout: float = doc(0.3, "feed-forward activation dropout of the backbones")
    backbone_res_dropout: float = doc(0.3, "residual dropout of the backbones")
    dropout: float = doc(0.4, "dropout inside the shared and private encoders")
    activation: str = doc("gelu", "activation of encoders, decoders and heads: gelu | relu | elu | tanh | leakyrelu")
    fusion_dim: int = doc(128, "width of the linear fusion layer; the MLP head halves it")
    # the reference table: models/modules.py (sin half, cos half, positions from 1)
    positions: str = doc("fairseq", "position table of the audio/vision backbones (layers.sinusoidal_table): "
                                    "fairseq = the reference code's; halves = the same table from position 0 "
                                    "(checkpoints without this field)")
    classifier_dropout: float = doc(0.1, "dropout of the prediction and noise-prediction heads")
    stat_hidden: int = doc(512, "hidden width of the JSD statistics networks")
    decoder_hidden: int = doc(256, "hidden width of the reconstruction decoders")
    alpha_info: float = doc(1e-2, "alpha: weight of the JSD mutual-information (information) loss")
    beta_consistency: float = doc(1e-4, "beta: weight of the Barlow Twins consistency loss")
    gamma_difference: float = doc(1e-3, "gamma: weight of the HSIC difference loss")
    lambda_reconstruction: float = doc(0.1, "lambda: weight of the reconstruction loss")
    cyclic_weight: float = doc(0.1, "weight of the cyclic (cross) reconstruction loss through gradient reversal")
    noise_prediction_weight: float = doc(1.0, "weight of the noise-prediction loss through gradient reversal")
    grl_alpha: float = doc(1.0, "maximum gradient-reversal scale")
    grl_warmup_steps: int = doc(0, "optimiser steps over which the reversal scale ramps 0 -> grl_alpha (DANN "
                                   "schedule); 0 = constant")
    prediction_loss: str = doc("l1", "prediction criterion: l1 (MOSI) | mse+l1 (MOSEI: MSE + L1 on values "
                                     "clamped to [-3, 3])")
    optimizer: str = doc("adamw", "optimiser (published recipe: adamw)")
    lr: float = doc(3e-5, "learning rate (published: 3e-5 MOSI, 2e-5 MOSEI)")
    batch_size: int = doc(32, "training batch size (published: 32)")
    scheduler: str = doc("plateau", "learning-rate schedule (plateau stands in for the authors' roll-back LR decay)")

    #: values of fields added after early checkpoints: a stored config without them was trained with these
    LEGACY_VALUES: ClassVar[dict] = {"positions": "halves"}


MIND_PRESETS = {
    # authors' MOSI script: BERT 768, COVAREP 74, FACET 47, 50 steps; embdim 512; ramp over 100 epochs x 40
    # steps (1284 // 32: the reference drops the last partial batch)
    "mosi": dict(MOSI_ALIGNED_INPUTS, d_model=512, dropout=0.35, fusion_dim=128, classifier_dropout=0.15,
                 alpha_info=1e-2, beta_consistency=1e-4, gamma_difference=1e-3, lambda_reconstruction=0.1,
                 cyclic_weight=0.1, noise_prediction_weight=1.0, grl_warmup_steps=4000,
                 prediction_loss="l1", lr=3e-5, batch_size=32),
    # authors' MOSEI script: FACET 35, embdim 256; ramp over 100 epochs x 510 steps (16326 // 32)
    "mosei": dict(MOSEI_ALIGNED_INPUTS, d_model=256, dropout=0.4, fusion_dim=128, classifier_dropout=0.1,
                  alpha_info=2e-2, beta_consistency=2e-4, gamma_difference=1e-3, lambda_reconstruction=1.0,
                  cyclic_weight=1.0, noise_prediction_weight=1.0, grl_warmup_steps=51000,
                  prediction_loss="mse+l1", lr=2e-5, batch_size=32),
    # small widths for tests and smoke runs (not a published setting)
    "tiny": dict(d_model=16, backbone_heads=2, backbone_layers=1, fusion_dim=8, stat_hidden=16, decoder_hidden=16),
}


def _validate(c: MInDConfig) -> None:
    if c.d_model % c.backbone_heads:
        raise ValueError(f"d_model ({c.d_model}) must be divisible by backbone_heads ({c.backbone_heads})")
    if c.activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {c.activation!r}")
    if c.prediction_loss not in ("l1", "mse+l1"):
        raise ValueError(f"prediction_loss must be 'l1' or 'mse+l1', got {c.prediction_loss!r}")
    if c.fusion_dim < 2:
        raise ValueError("fusion_dim must be >= 2")


class SequenceBackbone(nn.Module):
    """Audio/vision extractor: [B, L, D_in] + mask -> [B, d] (last valid step of a pre-norm transformer)."""

    def __init__(self, in_dim: int, c: MInDConfig):
        super().__init__()
        d = c.d_model
        self.conv = nn.Conv1d(in_dim, d, kernel_size=1, bias=False)
        self.scale = math.sqrt(d)
        self.pos = SinusoidalPositionalEncoding(d, layout=c.positions)
        self.embed_drop = Dropout(c.backbone_embed_dropout)
        self.layers = nn.ModuleList([
            EncoderLayer(d, c.backbone_heads, 4 * d, dropout=c.backbone_res_dropout,
                         attn_dropout=c.backbone_attn_dropout, relu_dropout=c.backbone_relu_dropout, norm_first=True)
            for _ in range(c.backbone_layers)])
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.conv(x.transpose(1, 2)).transpose(1, 2)  # [B, L, d]
        h = self.scale * h + self.pos(h)
        h = self.embed_drop(h) * mask.unsqueeze(-1).to(h.dtype)
        for layer in self.layers[:-1]:
            h = layer(h, mask)
        if not self.layers:
            return last_valid(self.norm(h), mask)
        # only the last valid step is kept: the final layer computes that step alone (exact)
        out = self.norm(self.layers[-1].forward_last(h, mask))
        return out * mask.any(dim=1, keepdim=True).to(out.dtype)  # zeros for an absent modality


#: seed of the Gaussian inputs of the noise components in eval mode (training draws from torch's global RNG)
EVAL_NOISE_SEED = 0


def gaussian_input(like: torch.Tensor, training: bool, index: int) -> torch.Tensor:
    """The N(0, I) input g_m of a private encoder's noise component, shaped like ``like``.

    Training draws from torch's global RNG, as the reference does. In eval mode the draw comes from a
    generator seeded with ``EVAL_NOISE_SEED + index`` instead: the noise losses of an evaluation (the valid /
    test ``loss`` the trainer reports, which a plateau schedule may follow) are then the same for the same
    batch every time, and an evaluation does not consume the global RNG, so evaluating (e.g. testing every
    epoch) leaves the training draws that follow unchanged. Predictions never depend on g_m.
    """
    if training:
        return torch.randn_like(like)
    gen = torch.Generator(device=like.device).manual_seed(EVAL_NOISE_SEED + index)
    return torch.randn(like.shape, generator=gen, device=like.device, dtype=like.dtype)


def _wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or as it is when it is float64 already (a float64 model, e.g. the trajectory parity)."""
    return x if x.dtype == torch.float64 else x.float()


def _encoder(d: int, c: MInDConfig) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), activation(c.activation), nn.LayerNorm(d), Dropout(c.dropout),
                         nn.Linear(d, d), activation(c.activation))


#: `msa tune`'s default ranges around the published MOSI/MOSEI settings (lr 3e-5 / 2e-5, batch 32, dropout 0.35,
#: loss weights alpha 1e-2, beta 1e-4, gamma 1e-3, lambda 0.1: each searched over a decade either side)
MIND_SPACE = {"lr": Float(1e-5, 1e-4, log=True), "batch_size": Choice(16, 32, 64), "dropout": Float(0.1, 0.5),
              "classifier_dropout": Float(0.0, 0.3), "fusion_dim": Choice(64, 128, 256),
              "alpha_info": Float(1e-3, 1e-1, log=True), "beta_consistency": Float(1e-5, 1e-3, log=True),
              "gamma_difference": Float(1e-4, 1e-2, log=True), "lambda_reconstruction": Float(1e-2, 1.0, log=True)}


@register_model("mind", MInDConfig, MIND_PRESETS, search_space=MIND_SPACE,
                summary="MInD (arXiv 2401.11818): shared/private encoders with a noise component; JSD MI, "
                        "Barlow Twins, HSIC, reconstruction, cyclic and noise-prediction losses")
class MInD(MSAModel):
    """MInD model; see the module docstring for the architecture, shapes, losses and deviations.

    ``forward(batch)`` returns ``ModelOutput(prediction [B], aux)`` with, for m in t/a/v:
    ``u_m`` backbone features, ``invariant_m``, ``specific_m``, ``noise_m`` components and
    ``gauss_m`` the Gaussian inputs of the noise components (all [B, d]).
    """

    #: short modality keys used in aux names
    KEYS = {"text": "t", "audio": "a", "vision": "v"}

    def __init__(self, config: MInDConfig):
        super().__init__(config)
        _validate(config)
        c, d = config, config.d_model
        self.text_encoder, text_in = build_text_encoder(c.text_encoder, c.text_dim)
        self.text_head = nn.Sequential(nn.Linear(text_in, d), nn.ReLU(), nn.LayerNorm(d))
        self.audio_backbone = SequenceBackbone(c.audio_dim, c)
        self.vision_backbone = SequenceBackbone(c.vision_dim, c)
        self.shared = _encoder(d, c)
        self.private = nn.ModuleDict({m: _encoder(d, c) for m in MODALITIES})
        self.fusion = nn.Linear(6 * d, c.fusion_dim)
        self.head = nn.Sequential(nn.Linear(c.fusion_dim, c.fusion_dim // 2), Dropout(c.classifier_dropout),
                                  activation(c.activation), nn.Linear(c.fusion_dim // 2, 1))
        self.set_objective(MInDObjective(config))

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Backbone features u_m [B, d] per modality (zeros for a sample whose modality is absent)."""
        text = text_features(self.text_encoder, batch)
        u_t = self.text_head(masked_mean(_wide(text), batch.text_mask))
        u_t = u_t * batch.text_mask.any(dim=1, keepdim=True).to(u_t.dtype)
        return {"text": u_t,
                "audio": self.audio_backbone(_wide(batch.audio), batch.audio_mask),
                "vision": self.vision_backbone(_wide(batch.vision), batch.vision_mask)}

    def forward(self, batch: Batch) -> ModelOutput:
        u = self.encode(batch)
        aux: dict[str, torch.Tensor] = {}
        feats = []
        for i, m in enumerate(MODALITIES):
            k = self.KEYS[m]
            inv, spec = self.shared(u[m]), self.private[m](u[m])
            gauss = gaussian_input(u[m], self.training, i)
            aux.update({f"u_{k}": u[m], f"invariant_{k}": inv, f"specific_{k}": spec,
                        f"noise_{k}": self.private[m](gauss), f"gauss_{k}": gauss})
            feats += [inv, spec]
        prediction = self.head(self.fusion(torch.cat(feats, dim=-1))).squeeze(-1)
        return ModelOutput(prediction, aux)


# ----------------------------------------------------------------------------- losses


def _roll(x: torch.Tensor) -> torch.Tensor:
    """Pair each row with the next sample's (marginal samples for the MI estimator)."""
    return torch.roll(x, shifts=-1, dims=0)


class StatisticsNetwork(nn.Module):
    """T(x, z): MLP over [x; z] -> scalar score [B]."""

    def __init__(self, x_dim: int, z_dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(x_dim + z_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, z], dim=-1)).squeeze(-1)


class MInDObjective(Objective):
    """All MInD losses; owns the statistics networks, decoders and the noise-prediction head."""

    def __init__(self, config: MInDConfig):
        super().__init__()
        self.config = c = config
        d, h, act = c.d_model, c.stat_hidden, c.activation
        keys = [MInD.KEYS[m] for m in MODALITIES]
        self.stat_invariant = nn.ModuleDict({k: StatisticsNetwork(3 * d, d, h) for k in keys})
        self.stat_specific = nn.ModuleDict({k: StatisticsNetwork(d, d, h) for k in keys})
        self.stat_noise = nn.ModuleDict({k: StatisticsNetwork(d, d, h) for k in keys})
        self.decoders = nn.ModuleDict({k: nn.Sequential(nn.Linear(3 * d, c.decoder_hidden), activation(act),
                                                        nn.Linear(c.decoder_hidden, d)) for k in keys})
        # cyclic cross-reconstruction: features from noise, noise from features
        self.noise_to_feat = nn.ModuleDict({k: nn.Sequential(nn.Linear(d, 2 * d), activation(act),
                                                             nn.Linear(2 * d, 2 * d)) for k in keys})
        self.feat_to_noise = nn.ModuleDict({k: nn.Sequential(nn.Linear(2 * d, d), activation(act), nn.Linear(d, d))
                                            for k in keys})
        self.noise_head = nn.Sequential(nn.Linear(3 * d, 3 * d // 2), Dropout(c.classifier_dropout),
                                        activation(act), nn.Linear(3 * d // 2, 1))
        # optimiser steps taken so far (drives the gradient-reversal schedule; saved with checkpoints); a
        # roll-back to the best weights keeps it counting, as the reference's global step
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    #: buffers a roll-back (training/selection.py) does not restore
    rollback_keep = ("step",)

    def grl_scale(self) -> float:
        c = self.config
        if c.grl_warmup_steps <= 0:
            return float(c.grl_alpha)
        p = min(float(self.step) / c.grl_warmup_steps, 1.0)
        return float(c.grl_alpha) * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)

    def prediction_loss(self, pred: torch.Tensor, label: torch.Tensor, clamp_l1: bool = True) -> torch.Tensor:
        if self.config.prediction_loss == "l1":
            return F.l1_loss(pred, label)
        loss = F.mse_loss(pred, label)
        if clamp_l1:
            loss = loss + F.l1_loss(pred.clamp(-3, 3), label.clamp(-3, 3))
        return loss

    def forward(self, output: ModelOutput, batch: Batch) -> LossOutput:
        c, a = self.config, output.aux
        pred = output.prediction
        label = batch.label.to(pred.dtype)
        keys = [MInD.KEYS[m] for m in MODALITIES]
        u = {k: a[f"u_{k}"] for k in keys}
        inv = {k: a[f"invariant_{k}"] for k in keys}
        spec = {k: a[f"specific_{k}"] for k in keys}
        noise = {k: a[f"noise_{k}"] for k in keys}
        gauss = {k: a[f"gauss_{k}"] for k in keys}
        scale = self.grl_scale()

        prediction = self.prediction_loss(pred, label)

        u_all = torch.cat([u[k] for k in keys], dim=-1)
        # -jsd_mi: minimising the loss maximises the MI estimate
        info_inv = sum(-jsd_mi(self.stat_invariant[k](u_all, inv[k]), self.stat_invariant[k](u_all, _roll(inv[k])))
                       for k in keys) / 3
        info_spec = sum(-jsd_mi(self.stat_specific[k](u[k], spec[k]), self.stat_specific[k](u[k], _roll(spec[k])))
                        for k in keys) / 3
        info_noise = sum(-jsd_mi(self.stat_noise[k](gauss[k], noise[k]),
                                 self.stat_noise[k](gauss[k], _roll(noise[k]))) for k in keys) / 3
        info = info_inv + info_spec + info_noise

        pairs = [("t", "a"), ("t", "v"), ("a", "v")]
        consistency = sum(barlow_twins_loss(inv[i], inv[j]) for i, j in pairs) / 3

        difference = (sum(hsic(inv[k], spec[k]) for k in keys)
                      + sum(hsic(spec[i], spec[j]) for i, j in pairs)) / 12 \
            + (sum(hsic(inv[k], noise[k]) for k in keys)
               + sum(hsic(spec[k], noise[k]) for k in keys)) / 12

        reconstruction = sum(F.mse_loss(self.decoders[k](torch.cat([inv[k], spec[k], noise[k]], -1)), u[k])
                             for k in keys) / 3

        cyclic = 0.0
        for k in keys:
            feat = torch.cat([inv[k], spec[k]], dim=-1)
            cyclic = cyclic + F.mse_loss(self.noise_to_feat[k](grad_reverse(noise[k], scale)), feat) \
                + F.mse_loss(self.feat_to_noise[k](grad_reverse(feat, scale)), noise[k])
        cyclic = cyclic / 6

        noise_all = torch.cat([noise[k] for k in keys], dim=-1)
        noise_pred = self.noise_head(grad_reverse(noise_all, scale)).squeeze(-1)
        noise_prediction = self.prediction_loss(noise_pred, label, clamp_l1=False)

        comps = {
            "prediction": prediction,
            "info": c.alpha_info * info,
            "consistency": c.beta_consistency * consistency,
            "difference": c.gamma_difference * difference,
            "reconstruction": c.lambda_reconstruction * reconstruction,
            "cyclic": c.cyclic_weight * cyclic,
            "noise_prediction": c.noise_prediction_weight * noise_prediction,
        }
        return LossOutput(sum(comps.values()), comps)

    @torch.no_grad()
    def after_step(self, model: MSAModel) -> None:
        """Advance the step counter that drives the gradient-reversal schedule."""
        self.step += 1
