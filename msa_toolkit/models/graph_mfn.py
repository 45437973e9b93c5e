"""Graph-MFN: MFN with the Dynamic Fusion Graph (Zadeh et al., ACL 2018, "Multimodal Language Analysis in the Wild:
CMU-MOSEI Dataset and Interpretable Dynamic Fusion Graph").

Checked against MMSA's ``models/singleTask/Graph_MFN.py`` (thuiar/MMSA @ a94e65d) by
``benchmarks/parity/parity_mmsa_graph_mfn.py``; presets from MMSA's ``config/config_regression.json``
("graph_mfn").
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import nn

from .._fields import doc
from ..space import Choice, Float
from ._registry import register_model
from .base import ModelConfig
from .mfn import MFN
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS

__all__ = ["GraphMFNConfig", "GraphMFN", "DynamicFusionGraph"]


@dataclass(frozen=True)
class GraphMFNConfig(ModelConfig):
    """Graph-MFN over word-aligned modalities (base ``dropout`` unused: each part has its own)."""

    text_hidden: int = doc(256, "hidden size of the text LSTM (and of its DFG singleton vertex)")
    audio_hidden: int = doc(32, "hidden size of the audio LSTM (and of its DFG singleton vertex)")
    vision_hidden: int = doc(256, "hidden size of the visual LSTM (and of its DFG singleton vertex)")
    mem_dim: int = doc(300, "size of the multi-view gated memory (MMSA memsize)")
    inner_node_dim: int = doc(64, "size of every multimodal DFG vertex and of the graph's output T")
    dfg_hidden: int = doc(100, "width of the linear bottleneck inside each DFG vertex network and the efficacy "
                               "network (100 in MMSA, fixed there)")
    update_hidden: int = doc(32, "hidden width of the network proposing the memory update (NNConfig.shapes)")
    update_dropout: float = doc(0.0, "dropout inside that network (NNConfig.drop)")
    retain_hidden: int = doc(128, "hidden width of the retain gate gamma1 (gamma1Config.shapes)")
    retain_dropout: float = doc(0.5, "dropout inside the retain gate (gamma1Config.drop)")
    write_hidden: int = doc(64, "hidden width of the update gate gamma2 (gamma2Config.shapes)")
    write_dropout: float = doc(0.5, "dropout inside the update gate (gamma2Config.drop)")
    out_hidden: int = doc(256, "hidden width of the output MLP (outConfig.shapes)")
    out_dropout: float = doc(0.0, "dropout inside the output MLP (outConfig.drop)")
    dropout: float = doc(0.1, "unused: Graph-MFN has the separate dropouts above")
    pool_audio_vision: bool = doc(False, "feed audio and vision as their utterance means, repeated at every text "
                                         "step; False = the aligned sequences (MMSA: need_normalized false)")
    loss: str = doc("l1", "training criterion: l1 | mse")
    lr: float = doc(2e-3, "learning rate")
    weight_decay: float = doc(5e-3, "weight decay (Adam)")
    batch_size: int = doc(32, "training batch size")


def _bottleneck(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """``Linear -> Linear`` with no activation between (each DFG vertex network, as MMSA builds it)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim))


def _proper_subsets(key: tuple[int, ...]) -> list[tuple[int, ...]]:
    """The non-empty proper subsets of ``key``, smallest first, each size in ``combinations`` order."""
    return [s for r in range(1, len(key)) for s in combinations(key, r)]


class DynamicFusionGraph(nn.Module):
    """The Dynamic Fusion Graph as MemoryFusionCore's fusion step (Graph-MFN).

    Singleton vertices: v_m = ReLU(W_m [h_m(t-1); h_m(t)]) [B, hidden_m]. Every multimodal vertex (each subset of
    two or more modalities, pairs before the triple) is a network over the efficacy-weighted outputs of its proper
    subsets; the graph's output T [B, out_dim] is a network over every vertex, each weighted by its efficacy.
    The efficacies alpha [B, n_edges] (19 for three modalities) are a linear network of the singleton vertices,
    unnormalised as in MMSA; the last ones are kept in ``last_efficacies`` (no gradient) for inspection.

    ``forward(previous, current)``: each modality's (h, c) before and after the step -> T.
    """

    def __init__(self, hidden: tuple[int, ...], out_dim: int, dfg_hidden: int):
        super().__init__()
        n = len(hidden)
        self.out_dim = out_dim
        self.singletons = nn.ModuleList([nn.Linear(2 * h, h) for h in hidden])
        self.multimodal = [key for r in range(2, n + 1) for key in combinations(range(n), r)]
        self.nodes = nn.ModuleDict()
        edges = 0
        for key in self.multimodal:
            parts = _proper_subsets(key)
            in_dim = sum(hidden[i] for i in key) + (len(parts) - len(key)) * out_dim
            self.nodes["_".join(map(str, key))] = _bottleneck(in_dim, dfg_hidden, out_dim)
            edges += len(parts)
        self.every_vertex = [(i,) for i in range(n)] + self.multimodal
        edges += len(self.every_vertex)
        self.top = _bottleneck(sum(hidden) + len(self.multimodal) * out_dim, dfg_hidden, out_dim)
        self.efficacy = nn.Sequential(nn.Linear(sum(hidden), dfg_hidden), nn.Linear(dfg_hidden, out_dim),
                                      nn.Linear(out_dim, edges))
        self.last_efficacies: torch.Tensor | None = None

    def forward(self, previous: list[tuple[torch.Tensor, torch.Tensor]],
                current: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        vertices = [F.relu(w(torch.cat([p[0], c[0]], dim=1))) for w, p, c in zip(self.singletons, previous, current)]
        out = {(i,): v for i, v in enumerate(vertices)}
        alpha = self.efficacy(torch.cat(vertices, dim=1))
        self.last_efficacies = alpha.detach()
        k = 0

        def weighted(parts: list[tuple[int, ...]]) -> torch.Tensor:
            return torch.cat([out[p] * alpha[:, k + j, None] for j, p in enumerate(parts)], dim=1)

        for key in self.multimodal:
            parts = _proper_subsets(key)
            out[key] = self.nodes["_".join(map(str, key))](weighted(parts))
            k += len(parts)
        return self.top(weighted(self.every_vertex))


def _mmsa(hidden: tuple[int, int, int], mem: int, inner: int, nets: tuple[tuple[int, float], ...], batch: int,
          lr: float, wd: float) -> dict:
    """A preset from MMSA's graph_mfn entry: hidden_dims (text, audio, video), memsize, inner_node_dim, and
    (shapes, drop) of NNConfig, gamma1Config, gamma2Config, outConfig."""
    names = ("update", "retain", "write", "out")
    sizes = {f"{n}_hidden": s for n, (s, _) in zip(names, nets)}
    drops = {f"{n}_dropout": d for n, (_, d) in zip(names, nets)}
    t, a, v = hidden
    return {"text_hidden": t, "audio_hidden": a, "vision_hidden": v, "mem_dim": mem, "inner_node_dim": inner,
            **sizes, **drops, "batch_size": batch, "lr": lr, "weight_decay": wd}


#: `msa tune`'s default ranges: MMSA's Graph-MFN tuning config (config_tune.json "graph_mfn"): hidden_dims as
#: per-modality choices over its triples, memsize (mem_dim), inner_node_dim, the shapes and drops of NNConfig,
#: gamma1Config, gamma2Config, outConfig (update_, retain_, write_, out_hidden / _dropout), batch size and weight
#: decay as there, learning rates as a log range over theirs
GRAPH_MFN_SPACE = {
    "text_hidden": Choice(64, 128, 256), "audio_hidden": Choice(16, 32), "vision_hidden": Choice(64, 128, 256),
    "mem_dim": Choice(64, 128, 256, 300, 400), "inner_node_dim": Choice(20, 32, 64, 128),
    **{f"{n}_hidden": Choice(32, 64, 128, 256) for n in ("update", "retain", "write", "out")},
    **{f"{n}_dropout": Choice(0.0, 0.2, 0.5, 0.7) for n in ("update", "retain", "write", "out")},
    "batch_size": Choice(32, 64), "lr": Float(5e-4, 5e-3, log=True),
    "weight_decay": Choice(0.0, 1e-3, 5e-3, 1e-2)}


@register_model("graph_mfn", GraphMFNConfig, search_space=GRAPH_MFN_SPACE, presets={
    # MMSA config_regression.json "graph_mfn".datasetParams.<dataset>; MMSA trains it on word-aligned features
    # (need_data_aligned), not averaged (need_normalized false)
    "mosi": {**MOSI_INPUTS, **_mmsa((256, 32, 256), 300, 64, ((32, 0.0), (128, 0.5), (64, 0.5), (256, 0.0)),
                                    32, 2e-3, 5e-3)},
    "mosei": {**MOSEI_INPUTS, **_mmsa((64, 16, 64), 300, 128, ((32, 0.5), (64, 0.0), (256, 0.7), (128, 0.7)),
                                      64, 2e-3, 1e-3)},
    "sims": {**SIMS_INPUTS, **_mmsa((256, 32, 256), 64, 128, ((256, 0.5), (32, 0.2), (32, 0.7), (256, 0.2)),
                                    64, 5e-4, 1e-3)},
    "tiny": {"text_hidden": 6, "audio_hidden": 4, "vision_hidden": 4, "mem_dim": 5, "inner_node_dim": 4,
             "dfg_hidden": 6, "update_hidden": 8, "retain_hidden": 8, "write_hidden": 8, "out_hidden": 8,
             "retain_dropout": 0.0, "write_dropout": 0.0},
}, summary="Graph Memory Fusion Network: MFN with the Dynamic Fusion Graph (Zadeh et al., 2018)")
class GraphMFN(MFN):
    """Graph-MFN: MFN's system of LSTMs and multi-view gated memory, with the Dynamic Fusion Graph in place of the
    delta-memory attention.

    MFN's model (text encoder, ``core``, ``out`` and forward) with :class:`DynamicFusionGraph` as the fusion step of
    :class:`~msa_toolkit.layers.MemoryFusionCore` (``core.fusion``), its inputs
    :func:`~msa_toolkit.layers.text_aligned`. At each step t the DFG reads every modality's hidden states of
    steps t-1 and t and gives T [B, inner_node_dim]; the memory proposal u = tanh(NN(T)), the gates
    gamma1 = sigmoid(G1([T; u_{t-1}])), gamma2 = sigmoid(G2(...)) give u_t = gamma1 * u_{t-1} + gamma2 * u.
    The prediction is MLP([h_t; h_a; h_v; u]) at the last step.

    Deviations from MMSA (``models/singleTask/Graph_MFN.py``): MMSA keeps the multimodal vertex networks in a plain
    dict, so they are not parameters of its model (never trained, not saved, not counted); here they are
    (``core.fusion.nodes``), as the paper trains the whole graph. Padded steps leave every state unchanged (MMSA
    runs through the padding of its fixed 50-step sequences); unaligned inputs are aligned per sample on their
    valid steps.
    """

    def _fusion_step(self, hidden: tuple[int, int, int]) -> tuple[tuple[int, float], nn.Module]:
        """No attention: the Dynamic Fusion Graph over the singleton vertices is the core's fusion step."""
        return (0, 0.0), DynamicFusionGraph(hidden, self.config.inner_node_dim, self.config.dfg_hidden)
