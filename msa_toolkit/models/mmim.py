"""MMIM: hierarchical mutual-information maximisation (Han, Chen and Poria, EMNLP 2021).

Paper: "Improving Multimodal Fusion with Hierarchical Mutual Information Maximization for Multimodal
Sentiment Analysis". Checked against MMSA (thuiar/MMSA @ a94e65d, ``src/MMSA/models/singleTask/MMIM.py`` and
``trains/singleTask/MMIM.py``; ``benchmarks/parity/parity_mmsa_mmim.py``).

Architecture (batch B)::

    text:   BERT state of the first token ([CLS])                                    -> h_t [B, Dt]
    audio/vision: bidirectional LSTM over the valid steps, last layer's final states of both directions,
            Dropout, Linear                                                         -> h_a, h_v
    fusion: Dropout, tanh(Linear), tanh(Linear) -> z [B, fusion_dim]; Linear -> prediction [B]

Objective (:class:`MMIMObjective`), the paper's two MI levels:

- input level, between modality pairs (t, v), (t, a) [and (v, a) with ``add_va``]: the MMILB lower bound
  ``lld = mean_i sum_k -(mu(x_i) - y_i)_k^2 / (2 exp(logvar(x_i)_k))`` of a Gaussian q(y|x) with MLP mean and
  log-variance, and the entropy of y under a Gaussian mixture of the positive / negative samples:
  ``H = 1/4 (log det Sigma_pos + log det Sigma_neg)`` with the covariances of a fixed projection of y over the
  current batch and a memory of the last ``memory_size`` training batches;
- fusion level: CPC between z and each modality, ``nce = -mean_i (cos(h_i, W z_i) - logsumexp_j cos(h_i, W z_j))``.

``L = L1 + alpha * nce - beta * lld - beta * H``, and the MMILB networks maximise ``lld`` (MMSA's first
stage). Components: ``prediction_l1``, ``nce``, ``lld`` (the encoders' term), ``entropy``, ``mmilb_lld`` (the
MMILB networks' term: its gradient reaches only them, the other terms' gradients reach only the encoders).

Deviations from MMSA: MMSA trains the MMILB networks in a separate pass over the training set before each
epoch of the other parameters; here one step carries both gradients (each term's gradient reaches only its
own parameters, as there). The memory is a ring over training batches kept across epochs and not saved in
checkpoints (MMSA starts it empty each epoch and uses H from the memory's second full batch on); H is 0
while a positive or negative group has no more samples than projected dimensions (its covariance would be
singular). The projection of y for the entropy is frozen at its Xavier initialisation, as MMSA never steps
it. The LSTMs read each modality's own valid steps; frozen text features use their first step as [CLS]. A
pair's MMILB terms and entropy read only the samples that have both of its modalities (MMSA's data always has
all three; an absent modality's constant representation would make the covariance singular).
Initialisation: every weight matrix outside the text encoder is Xavier-normal, as MMSA's trainer sets it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .._fields import doc
from ..space import Choice, Float, Int
from ._registry import register_model
from .base import LossOutput, ModelConfig, ModelOutput, MSAModel, Objective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS
from ..layers import Dropout, SequenceLSTM, activation, build_text_encoder, text_features

__all__ = ["MMIMConfig", "MMIM", "MMIMObjective", "MMILB", "CPC"]


@dataclass(frozen=True)
class MMIMConfig(ModelConfig):
    """MMIM hyper-parameters; defaults = MMSA's CMU-MOSI setting (config_regression.json ``mmim``)."""

    audio_hidden: int = doc(16, "audio LSTM width (d_ah)")
    vision_hidden: int = doc(16, "vision LSTM width (d_vh)")
    audio_out: int = doc(16, "audio representation width (d_aout)")
    vision_out: int = doc(16, "vision representation width (d_vout)")
    rnn_layers: int = doc(1, "LSTM layers (n_layer)")
    bidirectional: bool = doc(True, "bidirectional LSTMs")
    rnn_dropout: float = doc(0.1, "LSTM inter-layer and output dropout when rnn_layers > 1 (dropout_a/_v; "
                                  "MMSA uses none with one layer)")
    fusion_dim: int = doc(128, "width of the fusion network (d_prjh)")
    dropout: float = doc(0.1, "dropout on the fusion network's input (dropout_prj)")
    mmilb_activation: str = doc("relu", "hidden activation of the MMILB mean / log-variance MLPs")
    cpc_layers: int = doc(1, "layers of each CPC predictor")
    cpc_activation: str = doc("tanh", "activation between CPC predictor layers")
    add_va: bool = doc(False, "also bound the vision-audio MI (add_va)")
    alpha: float = doc(0.1, "weight of the CPC (nce) loss")
    beta: float = doc(0.1, "weight of the MMILB lower bound and the entropy")
    memory_size: int = doc(1, "training batches kept for the entropy estimate (mem_size)")
    optimizer: str = doc("adam", "optimiser (MMSA: Adam)")
    lr: float = doc(1e-3, "learning rate of the main parameters (lr_main)")
    weight_decay: float = doc(1e-4, "weight decay of the main parameters (weight_decay_main)")
    mmilb_lr: float = doc(1e-3, "learning rate of the MMILB networks (lr_mmilb)")
    mmilb_weight_decay: float = doc(1e-4, "weight decay of the MMILB networks (weight_decay_mmilb)")
    text_encoder_lr: float = doc(5e-5, "learning rate of a fine-tuned text encoder (lr_bert)")
    text_encoder_weight_decay: float = doc(1e-4, "weight decay of a fine-tuned text encoder (weight_decay_bert)")
    batch_size: int = doc(32, "training batch size")
    grad_clip_norm: float = doc(1.0, "clip the global gradient norm (grad_clip)")


class MMILB(nn.Module):
    """Gaussian q(y|x) with MLP mean and log-variance, and a fixed projection of y for the entropy estimate.

    ``forward(x [B, Dx], y [B, Dy]) -> (lld scalar, mu, logvar)``; :meth:`project` maps y to [B, Dy // 4].
    """

    def __init__(self, x_dim: int, y_dim: int, act: str = "relu"):
        super().__init__()
        self.mu = nn.Sequential(nn.Linear(x_dim, y_dim), activation(act), nn.Linear(y_dim, y_dim))
        self.logvar = nn.Sequential(nn.Linear(x_dim, y_dim), activation(act), nn.Linear(y_dim, y_dim))
        self.entropy_proj = nn.Sequential(nn.Linear(y_dim, y_dim // 4), nn.Tanh())
        self.entropy_proj.requires_grad_(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.mu(x), self.logvar(x)
        return (-(mu - y) ** 2 / 2.0 / torch.exp(logvar)).sum(-1).mean()

    def project(self, y: torch.Tensor) -> torch.Tensor:
        return self.entropy_proj(y)


class CPC(nn.Module):
    """Contrastive predictive coding score of ``x`` [B, Dx] from ``z`` [B, Dz] (both L2-normalised)."""

    def __init__(self, x_dim: int, z_dim: int, layers: int = 1, act: str = "tanh"):
        super().__init__()
        mods: list[nn.Module] = [nn.Linear(z_dim, x_dim)]
        for _ in range(layers - 1):
            mods += [activation(act), nn.Linear(x_dim, x_dim)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        pred = F.normalize(self.net(z), dim=1, eps=1e-30)
        x = F.normalize(x, dim=1, eps=1e-30)
        return -((x * pred).sum(-1) - torch.logsumexp(x @ pred.t(), dim=-1)).mean()


#: `msa tune`'s default ranges: MMSA's MMIM tuning config (config_tune.json "mmim"): batch size, grad_clip, the
#: weight decays, alpha, beta, the dropouts (dropout_a and dropout_v are one rnn_dropout here), n_layer, cpc_layers
#: and the widths (d_ah, d_vh, d_aout, d_vout, d_prjh) as there, lr_main and lr_mmilb as log ranges over theirs;
#: lr_bert / weight_decay_bert are not searched (MMSA's MMIM does not fine-tune BERT: use_finetune false)
MMIM_SPACE = {"batch_size": Choice(16, 32), "grad_clip_norm": Choice(0.6, 0.8, 1.0),
              **{k: Float(1e-4, 5e-3, log=True) for k in ("lr", "mmilb_lr")},
              **{k: Choice(0.0, 1e-4, 1e-3) for k in ("weight_decay", "mmilb_weight_decay")},
              **{k: Choice(0.0, 0.1, 0.2, 0.3, 0.4) for k in ("alpha", "beta", "dropout", "rnn_dropout")},
              "rnn_layers": Int(1, 4), "cpc_layers": Int(1, 4),
              **{k: Choice(16, 32, 64, 128) for k in ("audio_hidden", "vision_hidden", "audio_out", "vision_out")},
              "fusion_dim": Choice(64, 128, 256, 512)}


@register_model("mmim", MMIMConfig, search_space=MMIM_SPACE,
                presets={"mosi": {**MOSI_INPUTS}, "mosei": {**MOSEI_INPUTS}, "sims": {**SIMS_INPUTS},
                         "tiny": {"audio_hidden": 4, "vision_hidden": 4, "audio_out": 8, "vision_out": 8,
                                  "fusion_dim": 8, "dropout": 0.0}},
                summary="MMIM: hierarchical mutual-information maximisation (Han et al., 2021)")
class MMIM(MSAModel):
    """MMIM. ``forward(batch) -> ModelOutput(prediction [B], aux)``; ``aux``: ``text``, ``audio``, ``vision``
    (the modality representations), ``fusion`` [B, fusion_dim], ``nce`` (the summed CPC score, scalar)."""

    def __init__(self, config: MMIMConfig):
        super().__init__(config)
        c = config
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        dirs = 2 if c.bidirectional else 1
        drop = c.rnn_dropout if c.rnn_layers > 1 else 0.0
        self.lstm = nn.ModuleDict({"audio": SequenceLSTM(c.audio_dim, c.audio_hidden, c.rnn_layers, drop,
                                                         c.bidirectional),
                                   "vision": SequenceLSTM(c.vision_dim, c.vision_hidden, c.rnn_layers, drop,
                                                          c.bidirectional)})
        widths = {"audio": (c.audio_hidden, c.audio_out), "vision": (c.vision_hidden, c.vision_out)}
        self.proj = nn.ModuleDict({m: nn.Sequential(Dropout(drop), nn.Linear(dirs * hidden, out))
                                   for m, (hidden, out) in widths.items()})
        self.dims = {"text": dt, "audio": c.audio_out, "vision": c.vision_out}
        self.fusion = nn.Sequential(Dropout(c.dropout), nn.Linear(sum(self.dims.values()), c.fusion_dim),
                                    nn.Tanh(), nn.Linear(c.fusion_dim, c.fusion_dim), nn.Tanh())
        self.head = nn.Linear(c.fusion_dim, 1)
        self.cpc = nn.ModuleDict({m: CPC(self.dims[m], c.fusion_dim, c.cpc_layers, c.cpc_activation)
                                  for m in ("text", "vision", "audio")})
        self.set_objective(MMIMObjective(c, self.dims))
        for name, p in self.named_parameters():
            if p.dim() > 1 and not name.startswith("text_encoder."):
                nn.init.xavier_normal_(p)

    def forward(self, batch) -> ModelOutput:
        text = text_features(self.text_encoder, batch)
        h = {"text": text[:, 0] * batch.present("text")[:, None].to(text.dtype),
             **{m: self.proj[m](self.lstm[m].last(*batch.features(m))) for m in ("audio", "vision")}}
        z = self.fusion(torch.cat([h["text"], h["audio"], h["vision"]], dim=1))
        nce = sum(self.cpc[m](h[m], z) for m in ("text", "vision", "audio"))
        return ModelOutput(self.head(z).squeeze(-1), {**h, "fusion": z, "nce": nce})

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """MMSA's groups: the text encoder, the MMILB networks, everything else (the trainer's lr / decay)."""
        c = self.config
        mmilb = [p for p in self.objective.parameters() if p.requires_grad]
        bert = [] if self.text_encoder is None else [p for p in self.text_encoder.parameters() if p.requires_grad]
        taken = {id(p) for p in mmilb + bert}
        main = [p for p in self.parameters() if p.requires_grad and id(p) not in taken]
        return [*([{"params": bert, "lr": c.text_encoder_lr, "weight_decay": c.text_encoder_weight_decay}] if bert
                  else []),
                {"params": mmilb, "lr": c.mmilb_lr, "weight_decay": c.mmilb_weight_decay},
                {"params": main, "lr": lr, "weight_decay": weight_decay}]


class MMIMObjective(Objective):
    """L1 + alpha * CPC - beta * (MMILB + entropy), with the MMILB networks maximising their bound (see the
    module docstring). Holds the MMILB networks (``mi_tv``, ``mi_ta``, optional ``mi_va``) and the memory."""

    def __init__(self, config: MMIMConfig, dims: dict[str, int]):
        super().__init__()
        self.config = config
        self.pairs = [("text", "vision"), ("text", "audio")] + ([("vision", "audio")] if config.add_va else [])
        self.mi = nn.ModuleDict({f"{x[0]}{y[0]}": MMILB(dims[x], dims[y], config.mmilb_activation)
                                 for x, y in self.pairs})
        # per pair: the projected positive / negative samples of the last memory_size training batches
        self.memory: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {k: [] for k in self.mi}

    def entropy(self, key: str, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        """``1/4 (log det Sigma_pos + log det Sigma_neg)`` over the memory and this batch (0 while singular)."""
        mem = self.memory[key]
        if len(mem) < self.config.memory_size:
            return pos.new_zeros(())
        groups = [torch.cat([*(m[i] for m in mem), cur]) for i, cur in enumerate((pos, neg))]
        if min(len(g) for g in groups) <= pos.shape[1]:
            return pos.new_zeros(())
        with torch.autocast(pos.device.type, enabled=False):  # logdet has no low-precision kernel
            groups = [g.float() - g.float().mean(0) for g in groups]
            covs = [(g.unsqueeze(-1) * g.unsqueeze(1)).mean(0) for g in groups]
            return 0.25 * (torch.logdet(covs[0]) + torch.logdet(covs[1]))

    def forward(self, output: ModelOutput, batch) -> LossOutput:
        c, h = self.config, output.aux
        pred = F.l1_loss(output.prediction, batch.label.to(output.prediction.dtype))
        if not self.training:
            return LossOutput(pred, {"prediction_l1": pred})
        lld = mmilb = entropy = pred.new_zeros(())
        for x, y in self.pairs:
            # a pair's bounds and entropy read the samples that have both modalities (an absent one is a constant
            # representation: no information to bound, a singular covariance); MMSA's data always has all three
            both = batch.present(x) & batch.present(y)
            if not bool(both.any()):
                continue
            key = f"{x[0]}{y[0]}"
            net = self.mi[key]
            hx, hy, label = h[x][both], h[y][both], batch.label[both]
            frozen = {n: p.detach() for n, p in net.named_parameters()}
            lld = lld + functional_call(net, frozen, (hx, hy))  # gradient to the encoders only
            mmilb = mmilb + net(hx.detach(), hy.detach())      # gradient to the MMILB networks only
            proj = net.project(hy)
            pos, neg = proj[label > 0], proj[label < 0]
            entropy = entropy + self.entropy(key, pos, neg)
            self.memory[key] = (self.memory[key] + [(pos.detach(), neg.detach())])[-c.memory_size:]
        parts = {"prediction_l1": pred, "nce": c.alpha * h["nce"], "lld": -c.beta * lld,
                 "entropy": -c.beta * entropy, "mmilb_lld": -mmilb}
        return LossOutput(sum(parts.values()), parts)
