"""MFN: Memory Fusion Network (Zadeh et al., AAAI 2018, "Memory Fusion Network for Multi-view Sequential
Learning").

Checked against MMSA's ``models/singleTask/MFN.py`` (thuiar/MMSA @ a94e65d) by
``benchmarks/parity/parity_mmsa_mfn.py``; presets from MMSA's ``config/config_regression.json`` ("mfn").
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .._fields import doc
from ..layers import Dropout, MemoryFusionCore, build_text_encoder, text_aligned, text_features
from ..space import Choice, Float
from ._registry import register_model
from .base import ModelConfig, ModelOutput, MSAModel, RegressionObjective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS

__all__ = ["MFNConfig", "MFN"]

@dataclass(frozen=True)
class MFNConfig(ModelConfig):
    """Memory Fusion Network over word-aligned modalities (base ``dropout`` unused: each part has its own)."""

    text_hidden: int = doc(256, "hidden size of the text LSTM")
    audio_hidden: int = doc(32, "hidden size of the audio LSTM")
    vision_hidden: int = doc(256, "hidden size of the visual LSTM")
    mem_dim: int = doc(400, "size of the multi-view gated memory")
    attn_hidden: int = doc(32, "hidden width of the delta-memory attention network (MMSA NN1Config.shapes)")
    attn_dropout: float = doc(0.2, "dropout inside the attention network (NN1Config.drop)")
    update_hidden: int = doc(64, "hidden width of the network proposing the memory update (NN2Config.shapes)")
    update_dropout: float = doc(0.0, "dropout inside that network (NN2Config.drop)")
    retain_hidden: int = doc(256, "hidden width of the retain gate gamma1 (gamma1Config.shapes)")
    retain_dropout: float = doc(0.7, "dropout inside the retain gate (gamma1Config.drop)")
    write_hidden: int = doc(32, "hidden width of the update gate gamma2 (gamma2Config.shapes)")
    write_dropout: float = doc(0.5, "dropout inside the update gate (gamma2Config.drop)")
    out_hidden: int = doc(128, "hidden width of the output MLP (outConfig.shapes)")
    out_dropout: float = doc(0.0, "dropout inside the output MLP (outConfig.drop)")
    dropout: float = doc(0.1, "unused: MFN has the separate dropouts above")
    pool_audio_vision: bool = doc(False, "feed audio and vision as their utterance means, repeated at every text "
                                         "step, as MMSA's data loader does for MFN (need_normalized); False = "
                                         "the aligned sequences")
    loss: str = doc("l1", "training criterion: l1 | mse")
    lr: float = doc(2e-3, "learning rate")
    weight_decay: float = doc(0.0, "weight decay (Adam)")
    batch_size: int = doc(128, "training batch size")


def _mmsa(hidden: tuple[int, int, int], mem: int, nets: tuple[tuple[int, float], ...], batch: int, lr: float,
          wd: float) -> dict:
    """A preset from MMSA's mfn entry: hidden_dims (text, audio, video), memsize, and (shapes, drop) of NN1Config,
    NN2Config, gamma1Config, gamma2Config, outConfig."""
    names = ("attn", "update", "retain", "write", "out")
    sizes = {f"{n}_hidden": s for n, (s, _) in zip(names, nets)}
    drops = {f"{n}_dropout": d for n, (_, d) in zip(names, nets)}
    t, a, v = hidden
    return {"text_hidden": t, "audio_hidden": a, "vision_hidden": v, "mem_dim": mem, **sizes, **drops,
            "batch_size": batch, "lr": lr, "weight_decay": wd}


#: `msa tune`'s default ranges: MMSA's MFN tuning config (config_tune.json "mfn"): hidden_dims as per-modality
#: choices, memsize (mem_dim), the shapes and drops of NN1Config, NN2Config, gamma1Config, gamma2Config, outConfig
#: (attn_, update_, retain_, write_, out_hidden / _dropout) and batch size as there, learning rates as a log range
#: over theirs (windowsize is 2 there, and always here)
MFN_SPACE = {"text_hidden": Choice(64, 128, 256), "audio_hidden": Choice(16, 32), "vision_hidden": Choice(64, 128, 256),
             "mem_dim": Choice(64, 128, 256, 300, 400),
             **{f"{n}_hidden": Choice(32, 64, 128, 256) for n in ("attn", "update", "retain", "write", "out")},
             **{f"{n}_dropout": Choice(0.0, 0.2, 0.5, 0.7) for n in ("attn", "update", "retain", "write", "out")},
             "batch_size": Choice(32, 64, 128), "lr": Float(5e-4, 5e-3, log=True)}


@register_model("mfn", MFNConfig, search_space=MFN_SPACE, presets={
    # MMSA config_regression.json "mfn".datasetParams.<dataset> (windowsize 2 in all); MMSA trains it on
    # word-aligned features (need_data_aligned)
    "mosi": {**MOSI_INPUTS, **_mmsa((256, 32, 256), 400, ((32, 0.2), (64, 0.0), (256, 0.7), (32, 0.5),
                                                             (128, 0.0)), 128, 2e-3, 0.0)},
    "mosei": {**MOSEI_INPUTS, **_mmsa((128, 32, 128), 128, ((128, 0.2), (128, 0.5), (256, 0.7), (256, 0.0),
                                                              (128, 0.5)), 64, 5e-4, 1e-4)},
    "sims": {**SIMS_INPUTS, **_mmsa((64, 16, 64), 64, ((128, 0.2), (128, 0.0), (64, 0.2), (64, 0.7),
                                                         (64, 0.7)), 32, 1e-3, 0.0)},
    "tiny": {"text_hidden": 6, "audio_hidden": 4, "vision_hidden": 4, "mem_dim": 5, "attn_hidden": 8,
             "update_hidden": 8, "retain_hidden": 8, "write_hidden": 8, "out_hidden": 8, "attn_dropout": 0.0,
             "retain_dropout": 0.0, "write_dropout": 0.0},
}, summary="Memory Fusion Network (Zadeh et al., 2018)")
class MFN(MSAModel):
    """MFN: a system of LSTMs (one per modality), a delta-memory attention network and a multi-view gated memory.

    The recurrent core is :class:`~msa_toolkit.layers.MemoryFusionCore` (``core``, shared with MFM), its inputs
    :func:`~msa_toolkit.layers.text_aligned` (audio and vision on the text's valid steps). At each step t every modality's LSTMCell updates (h_m, c_m); the cells of steps t-1 and t, c* = [c_{t-1};
    c_t] [B, 2 * sum(h)], are weighted by a softmax attention a = softmax(NN1(c*)); the memory proposal
    u = tanh(NN2(a * c*)); the gates gamma1 = sigmoid(G1([a * c*; u_{t-1}])), gamma2 = sigmoid(G2(...)) give
    u_t = gamma1 * u_{t-1} + gamma2 * proposal. The prediction is MLP([h_t; h_a; h_v; u]) at the last step.

    Padded steps leave every state unchanged, so the states are those of each sample's last valid step.
    Deviations from MMSA (``models/singleTask/MFN.py``): that masking (MMSA runs through the padding of its
    fixed 50-step sequences); unaligned inputs are aligned per sample on their valid steps; audio and vision
    are the aligned sequences unless ``pool_audio_vision`` (MMSA's data loader averages them for MFN).
    """

    def __init__(self, config: MFNConfig):
        super().__init__(config)
        c = config
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        hid = (c.text_hidden, c.audio_hidden, c.vision_hidden)
        attention, fusion = self._fusion_step(hid)
        self.core = MemoryFusionCore((dt, c.audio_dim, c.vision_dim), hid, c.mem_dim,
                                     (attention, (c.update_hidden, c.update_dropout),
                                      (c.retain_hidden, c.retain_dropout), (c.write_hidden, c.write_dropout)),
                                     fusion=fusion)
        self.out = nn.Sequential(nn.Linear(self.core.out_dim, c.out_hidden), nn.ReLU(), Dropout(c.out_dropout),
                                 nn.Linear(c.out_hidden, 1))
        self.set_objective(RegressionObjective(c.loss))

    def _fusion_step(self, hidden: tuple[int, int, int]) -> tuple[tuple[int, float], nn.Module | None]:
        """(hidden width, dropout) of the delta-memory attention, and the core's ``fusion`` module (None: that
        attention); Graph-MFN returns its Dynamic Fusion Graph."""
        return (self.config.attn_hidden, self.config.attn_dropout), None

    def forward(self, batch) -> ModelOutput:
        text = text_features(self.text_encoder, batch)
        last = self.core(*text_aligned(text, batch, pool=self.config.pool_audio_vision))
        return ModelOutput(self.out(last).squeeze(-1), {"representation": last})
