"""MFM: Multimodal Factorization Model (Tsai et al., ICLR 2019, "Learning Factorized Multimodal
Representations").

The joint distribution of the three modalities and the label is factorised into a multimodal discriminative
factor z_y (from a Memory Fusion Network over all modalities) and one modality-specific generative factor per
modality z_l, z_a, z_v (an LSTM encoder each). Each factor goes through a small MLP (F_y, F_m); the label is
predicted from F_y alone, and each modality's sequence is generated back from [F_y; F_m] by an LSTM decoder.
Training minimises the prediction loss, the weighted reconstruction errors and a Maximum Mean Discrepancy
between each factor and a standard Gaussian sample (the Wasserstein-autoencoder prior matching of the paper).

Checked against MMSA's ``models/singleTask/MFM.py`` (thuiar/MMSA @ a94e65d) by
``benchmarks/parity/parity_mmsa_mfm.py``; presets from MMSA's ``config/config_regression.json`` ("mfm").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._fields import doc
from ..layers import Dropout, MemoryFusionCore, build_text_encoder, last_valid, text_aligned, text_features
from ..layers.losses import masked_mse, regression_loss
from ..space import Choice, Float
from ..spec import MODALITIES
from ._registry import register_model
from .base import LossOutput, ModelConfig, ModelOutput, MSAModel, Objective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS

__all__ = ["MFMConfig", "MFM", "MFMObjective", "gaussian_mmd"]

#: short names of the modality factors (MMSA's l / a / v)
SHORT = {"text": "l", "audio": "a", "vision": "v"}


@dataclass(frozen=True)
class MFMConfig(ModelConfig):
    """Multimodal Factorization Model (base ``dropout`` unused: every part has its own)."""

    text_hidden: int = doc(128, "MFN: hidden size of the text LSTM (MMSA hidden_dims[0])")
    audio_hidden: int = doc(32, "MFN: hidden size of the audio LSTM (hidden_dims[1])")
    vision_hidden: int = doc(128, "MFN: hidden size of the visual LSTM (hidden_dims[2])")
    mem_dim: int = doc(64, "MFN: size of the multi-view gated memory (memsize)")
    attn_hidden: int = doc(32, "MFN: hidden width of the delta-memory attention (NN1Config.shapes)")
    attn_dropout: float = doc(0.7, "MFN: dropout inside the attention (NN1Config.drop)")
    update_hidden: int = doc(64, "MFN: hidden width of the memory proposal network (NN2Config.shapes)")
    update_dropout: float = doc(0.0, "MFN: dropout inside it (NN2Config.drop)")
    retain_hidden: int = doc(32, "MFN: hidden width of the retain gate (gamma1Config.shapes)")
    retain_dropout: float = doc(0.0, "MFN: dropout inside it (gamma1Config.drop)")
    write_hidden: int = doc(64, "MFN: hidden width of the update gate (gamma2Config.shapes)")
    write_dropout: float = doc(0.5, "MFN: dropout inside it (gamma2Config.drop)")
    zy_size: int = doc(80, "size of the multimodal discriminative factor z_y")
    zl_size: int = doc(64, "size of the text generative factor z_l (its encoder LSTM's hidden size)")
    za_size: int = doc(80, "size of the audio generative factor z_a")
    zv_size: int = doc(80, "size of the visual generative factor z_v")
    fy_size: int = doc(64, "width of F_y(z_y)")
    fl_size: int = doc(32, "width of F_l(z_l)")
    fa_size: int = doc(16, "width of F_a(z_a)")
    fv_size: int = doc(64, "width of F_v(z_v)")
    zy_dropout: float = doc(0.5, "dropout inside F_y (zy_to_fy_dropout)")
    zl_dropout: float = doc(0.5, "dropout inside F_l (zl_to_fl_dropout)")
    za_dropout: float = doc(0.7, "dropout inside F_a (za_to_fa_dropout)")
    zv_dropout: float = doc(0.5, "dropout inside F_v (zv_to_fv_dropout)")
    fy_dropout: float = doc(0.0, "dropout inside the label head on F_y (fy_to_y_dropout)")
    mmd_weight: float = doc(100.0, "weight of each factor's MMD to the Gaussian prior (lda_mmd)")
    recon_text_weight: float = doc(0.5, "weight of the text reconstruction MSE (lda_xl)")
    recon_audio_weight: float = doc(0.01, "weight of the audio reconstruction MSE (lda_xa)")
    recon_vision_weight: float = doc(0.5, "weight of the visual reconstruction MSE (lda_xv)")
    dropout: float = doc(0.1, "unused: MFM has the separate dropouts above")
    loss: str = doc("l1", "prediction criterion: l1 (MMSA) | mse")
    lr: float = doc(1e-3, "learning rate (MMSA's trainer builds Adam without its learning_rate: Adam's 1e-3)")
    weight_decay: float = doc(1e-3, "weight decay (Adam)")
    batch_size: int = doc(64, "training batch size")


def _mmsa(hidden, mem, nets, z, f, drops, lda, batch, wd) -> dict:
    """A preset from MMSA's mfm entry: hidden_dims, memsize, (shapes, drop) of NN1/NN2/gamma1/gamma2Config,
    (zy, zl, za, zv), (fy, fl, fa, fv), dropouts (zy, zl, za, zv, fy), (lda_mmd, lda_xl, lda_xa, lda_xv)."""
    out = dict(zip(("text_hidden", "audio_hidden", "vision_hidden"), hidden), mem_dim=mem, batch_size=batch,
               weight_decay=wd)
    for n, (s, d) in zip(("attn", "update", "retain", "write"), nets):
        out[f"{n}_hidden"], out[f"{n}_dropout"] = s, d
    out.update(zip(("zy_size", "zl_size", "za_size", "zv_size"), z))
    out.update(zip(("fy_size", "fl_size", "fa_size", "fv_size"), f))
    out.update(zip(("zy_dropout", "zl_dropout", "za_dropout", "zv_dropout", "fy_dropout"), drops))
    out.update(zip(("mmd_weight", "recon_text_weight", "recon_audio_weight", "recon_vision_weight"), lda))
    return out


def gaussian_mmd(z: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """MMD between the rows of ``z`` [N, D] and a prior sample ``prior`` [N, D] with the kernel
    k(x, y) = exp(-mean_d (x_d - y_d)^2 / D) (the biased estimate: every pair, the diagonal included)."""
    def kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.exp(-(x[:, None] - y[None]).pow(2).mean(-1) / x.shape[1])
    return kernel(prior, prior).mean() + kernel(z, z).mean() - 2.0 * kernel(prior, z).mean()


class _Decoder(nn.Module):
    """LSTMCell decoder: the code is the first input, each later input the previous hidden state; a Linear
    maps every hidden state to a feature vector. ``forward(code [B, H], length) -> [B, length, out_dim]``."""

    def __init__(self, hidden: int, out_dim: int):
        super().__init__()
        self.cell = nn.LSTMCell(hidden, hidden)
        self.out = nn.Linear(hidden, out_dim)

    def forward(self, code: torch.Tensor, length: int) -> torch.Tensor:
        h, c, x, states = torch.zeros_like(code), torch.zeros_like(code), code, []
        for _ in range(length):
            h, c = self.cell(x, (h, c))
            states.append(h)
            x = h
        return self.out(torch.stack(states, dim=1))


def _factor_mlp(z: int, f: int, dropout: float) -> nn.Sequential:
    """F(z) = ReLU(Linear(Dropout(ReLU(Linear(z)))))."""
    return nn.Sequential(nn.Linear(z, f), nn.ReLU(), Dropout(dropout), nn.Linear(f, f), nn.ReLU())


#: `msa tune`'s default ranges: MMSA's MFM tuning config (config_tune.json "mfm"): hidden_dims as per-modality
#: choices, memsize, the MFN networks' shapes and drops (NN1Config .. gamma2Config; outConfig sizes layers MFM does
#: not build), the factor sizes (z*_size, f*_size), the factor dropouts (z*_to_f*_dropout, fy_to_y_dropout), the
#: loss weights (lda_mmd, lda_xl/xa/xv) and batch size as there; learning_rate as a log range over its list (MMSA's
#: trainer ignores it: Adam's 1e-3)
MFM_SPACE = {"text_hidden": Choice(64, 128, 256), "audio_hidden": Choice(16, 32), "vision_hidden": Choice(64, 128, 256),
             "mem_dim": Choice(64, 128, 256, 300, 400),
             **{f"{n}_hidden": Choice(32, 64, 128, 256) for n in ("attn", "update", "retain", "write")},
             **{f"{n}_dropout": Choice(0.0, 0.2, 0.5, 0.7) for n in ("attn", "update", "retain", "write")},
             **{f"{n}_size": Choice(8, 16, 32, 48, 64, 80) for n in ("zy", "za", "zv", "fy", "fa", "fv")},
             "zl_size": Choice(32, 64, 88, 128, 156, 256), "fl_size": Choice(32, 64, 88, 128, 156, 256),
             **{f"{n}_dropout": Choice(0.0, 0.2, 0.5, 0.7) for n in ("zy", "zl", "za", "zv", "fy")},
             "mmd_weight": Choice(10.0, 50.0, 100.0, 200.0),
             **{f"recon_{m}_weight": Choice(0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0) for m in MODALITIES},
             "batch_size": Choice(32, 64, 128), "lr": Float(5e-4, 5e-3, log=True)}


@register_model("mfm", MFMConfig, search_space=MFM_SPACE, presets={
    # MMSA config_regression.json "mfm".datasetParams.<dataset> (windowsize 2 everywhere; outConfig sizes MMSA's
    # unused MFN output layers, not built here); MMSA trains MFM on word-aligned features (need_data_aligned)
    "mosi": {**MOSI_INPUTS, **_mmsa((128, 32, 128), 64, ((32, 0.7), (64, 0.0), (32, 0.0), (64, 0.5)),
                                    (80, 64, 80, 80), (64, 32, 16, 64), (0.5, 0.5, 0.7, 0.5, 0.0),
                                    (100.0, 0.5, 0.01, 0.5), 64, 1e-3)},
    "mosei": {**MOSEI_INPUTS, **_mmsa((256, 32, 256), 64, ((1278, 0.5), (32, 0.7), (64, 0.5), (128, 0.2)),
                                      (32, 256, 80, 80), (16, 32, 80, 32), (0.2, 0.7, 0.7, 0.7, 0.2),
                                      (10.0, 5.0, 2.0, 5.0), 64, 5e-4)},
    "sims": {**SIMS_INPUTS, **_mmsa((64, 16, 64), 128, ((32, 0.5), (64, 0.5), (64, 0.7), (256, 0.0)),
                                    (48, 256, 32, 80), (48, 256, 80, 48), (0.5, 0.0, 0.7, 0.0, 0.7),
                                    (200.0, 0.5, 0.01, 0.01), 128, 5e-3)},
    "tiny": {"text_hidden": 8, "audio_hidden": 8, "vision_hidden": 8, "mem_dim": 8, "attn_hidden": 8,
             "update_hidden": 8, "retain_hidden": 8, "write_hidden": 8, "attn_dropout": 0.0, "write_dropout": 0.0,
             "zy_size": 8, "zl_size": 5, "za_size": 4, "zv_size": 4, "fy_size": 8, "fl_size": 4, "fa_size": 3,
             "fv_size": 3, "zy_dropout": 0.0, "zl_dropout": 0.0, "za_dropout": 0.0, "zv_dropout": 0.0},
}, summary="Multimodal Factorization Model (Tsai et al., 2019)")
class MFM(MSAModel):
    """MFM: an MFN discriminative factor, LSTM generative factors, LSTM decoders, MMD prior matching.

    Shapes: z_y = Linear(MFN(text, audio, vision)) [B, zy]; z_m = Linear(LSTM_m(x_m) at the last valid step)
    [B, z_m]; F_y, F_m as :func:`_factor_mlp`; x_m_hat = decoder_m([F_y; F_m], L_m) [B, L_m, D_m];
    prediction = MLP(F_y) [B]. aux: the factors ``z_y``/``z_text``/..., the reconstructions ``recon_<m>``.

    Deviations from MMSA: padded steps are masked (the MFN and the encoders keep their state at each sample's
    last valid step; the reconstruction errors average over valid steps); each modality is decoded to its own
    length (MMSA decodes the text length, its features being word-aligned); audio and vision that are not
    aligned to the text enter the MFN as their utterance means (:func:`~msa_toolkit.layers.text_aligned`);
    MMSA's MFN output layers (``out_fc1``/``out_fc2``), built but unused by MFM, are not built.
    """

    def __init__(self, config: MFMConfig):
        super().__init__(config)
        c = config
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        dims = {"text": dt, "audio": c.audio_dim, "vision": c.vision_dim}
        hidden = (c.text_hidden, c.audio_hidden, c.vision_hidden)
        self.mfn = MemoryFusionCore(tuple(dims.values()), hidden, c.mem_dim,
                                    ((c.attn_hidden, c.attn_dropout), (c.update_hidden, c.update_dropout),
                                     (c.retain_hidden, c.retain_dropout), (c.write_hidden, c.write_dropout)))
        self.to_zy = nn.Linear(self.mfn.out_dim, c.zy_size)
        z = {m: getattr(c, f"z{SHORT[m]}_size") for m in MODALITIES}
        f = {m: getattr(c, f"f{SHORT[m]}_size") for m in MODALITIES}
        self.encoders = nn.ModuleDict({m: nn.LSTM(dims[m], z[m], batch_first=True) for m in MODALITIES})
        self.encoder_out = nn.ModuleDict({m: nn.Linear(z[m], z[m]) for m in MODALITIES})
        self.fy = _factor_mlp(c.zy_size, c.fy_size, c.zy_dropout)
        self.fm = nn.ModuleDict({m: _factor_mlp(z[m], f[m], getattr(c, f"z{SHORT[m]}_dropout")) for m in MODALITIES})
        self.decoders = nn.ModuleDict({m: _Decoder(c.fy_size + f[m], dims[m]) for m in MODALITIES})
        self.head = nn.Sequential(nn.Linear(c.fy_size, c.fy_size), nn.ReLU(), Dropout(c.fy_dropout),
                                  nn.Linear(c.fy_size, 1))
        self.set_objective(MFMObjective(c))

    def _discriminative(self, batch, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xs, mask = text_aligned(text, batch)
        zy = self.to_zy(self.mfn(xs, mask))
        return zy, self.fy(zy)

    def forward(self, batch) -> ModelOutput:
        text = text_features(self.text_encoder, batch)
        feats = {"text": text, "audio": batch.audio, "vision": batch.vision}
        zy, fy = self._discriminative(batch, text)
        aux = {"z_y": zy}
        for m in MODALITIES:
            x, mask = feats[m], batch.features(m)[1]
            states, _ = self.encoders[m](x)
            zm = self.encoder_out[m](last_valid(states, mask))
            aux[f"z_{m}"] = zm
            aux[f"recon_{m}"] = self.decoders[m](torch.cat([fy, self.fm[m](zm)], dim=1), x.shape[1])
            aux[f"input_{m}"] = x
        return ModelOutput(self.head(fy).squeeze(-1), aux)

    def predict(self, batch) -> torch.Tensor:
        """The prediction alone: the MFN branch (the generative factors and decoders only feed the objective)."""
        return self.head(self._discriminative(batch, text_features(self.text_encoder, batch))[1]).squeeze(-1)


class MFMObjective(Objective):
    """``prediction`` (L1) + ``recon_<m>`` (lda_x<m> x MSE over valid steps) + ``mmd_<factor>`` (lda_mmd x MMD
    of z_y / z_text / z_audio / z_vision to a fresh N(0, I) sample of the same shape, drawn in the order text,
    audio, vision, y as MMSA draws them)."""

    def __init__(self, config: MFMConfig):
        super().__init__()
        self.config = config

    def forward(self, output: ModelOutput, batch) -> LossOutput:
        c, aux = self.config, output.aux
        comps = {"prediction": regression_loss(output.prediction, batch.label, c.loss)}
        for m in MODALITIES:
            w = getattr(c, f"recon_{m}_weight")
            comps[f"recon_{m}"] = w * masked_mse(aux[f"recon_{m}"], aux[f"input_{m}"], batch.features(m)[1])
        for name in ("z_text", "z_audio", "z_vision", "z_y"):
            z = aux[name]
            comps[f"mmd_{name}"] = c.mmd_weight * gaussian_mmd(z, torch.randn(z.shape, dtype=z.dtype,
                                                                               device=z.device))
        return LossOutput(sum(comps.values()), comps)
