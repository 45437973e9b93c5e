"""What MMSA's multi-task models (MTFN, MLMF, MLF-DNN) share: the unimodal heads, their config fields, the
weighted multi-task objective and the per-subnetwork Adam groups of MMSA's ``trains/multiTask/*.py``.

Each model keeps its single-task parent's fusion and adds one head per modality trained on that modality's
label (``label_T``, ``label_A``, ``label_V``; Yu et al., ACL 2020, CH-SIMS).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from torch import nn

from .._fields import doc
from ..layers import Dropout
from .base import ModelOutput, MultiTaskObjective, unimodal_key

__all__ = ["MultiTaskConfig", "MultiTaskHeads", "unimodal_head", "unimodal_heads", "with_unimodal", "multitask_objective", "subnet_param_groups"]


@dataclass(frozen=True)
class MultiTaskConfig:
    """Fields of the unimodal heads, the task weights and the per-subnetwork weight decays."""

    post_text_dim: int = doc(32, "width of the text head's two hidden layers")
    post_audio_dim: int = doc(5, "width of the audio head's two hidden layers")
    post_vision_dim: int = doc(5, "width of the vision head's two hidden layers")
    post_text_dropout: float = doc(0.2, "dropout before the text head (MMSA post_dropouts[0])")
    post_audio_dropout: float = doc(0.2, "dropout before the audio head (MMSA post_dropouts[1])")
    post_vision_dropout: float = doc(0.2, "dropout before the vision head (MMSA post_dropouts[2])")
    weight_M: float = doc(1.0, "weight of the multimodal prediction loss (MMSA 'M')")
    weight_T: float = doc(1.0, "weight of the text head's loss on label_T (MMSA 'T')")
    weight_A: float = doc(1.0, "weight of the audio head's loss on label_A (MMSA 'A')")
    weight_V: float = doc(1.0, "weight of the vision head's loss on label_V (MMSA 'V')")
    text_weight_decay: float = doc(0.0, "weight decay of the language subnetwork's parameters")
    audio_weight_decay: float = doc(0.0, "weight decay of the audio subnetwork's parameters")
    vision_weight_decay: float = doc(0.0, "weight decay of the visual subnetwork's parameters")


def unimodal_head(in_dim: int, hidden: int, dropout: float) -> nn.Sequential:
    """A unimodal (or post-fusion) head as MMSA's multi-task models build it: ``Dropout -> Linear -> ReLU ->
    Linear -> ReLU -> Linear`` to one score."""
    return nn.Sequential(Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, 1))


def unimodal_heads(c: MultiTaskConfig, text: int, audio: int, vision: int) -> nn.ModuleDict:
    """The three heads ``T``, ``A``, ``V`` over representations of widths ``text``, ``audio``, ``vision``."""
    return nn.ModuleDict({"T": unimodal_head(text, c.post_text_dim, c.post_text_dropout),
                          "A": unimodal_head(audio, c.post_audio_dim, c.post_audio_dropout),
                          "V": unimodal_head(vision, c.post_vision_dim, c.post_vision_dropout)})


def with_unimodal(out: ModelOutput, heads: nn.ModuleDict) -> ModelOutput:
    """``out`` with each head's score on its representation (``aux["z_text" | "z_audio" | "z_vision"]``) added as
    ``aux["prediction_T" | "prediction_A" | "prediction_V"]`` [B]."""
    z = {"T": out.aux["z_text"], "A": out.aux["z_audio"], "V": out.aux["z_vision"]}
    return ModelOutput(out.prediction, {**out.aux, **{unimodal_key(t): heads[t](z[t]).squeeze(-1) for t in heads}})


def multitask_objective(c) -> MultiTaskObjective:
    """Σ_t weight_t · criterion over the tasks M, T, A, V (MMSA's trainers)."""
    return MultiTaskObjective({"M": c.weight_M, "T": c.weight_T, "A": c.weight_A, "V": c.weight_V}, c.loss)


def subnet_param_groups(model: nn.Module, subnets: dict[str, nn.Module], weight_decay: float,
                        first: Iterable[dict] = ()) -> list[dict]:
    """MMSA's multi-task Adam groups: the groups ``first`` (e.g. LMF's factors at their own lr), then each
    ``subnets[name]`` (name in text / audio / vision) with ``config.<name>_weight_decay``, then every other
    trainable parameter (heads, fusion, a fine-tuned text encoder) with ``weight_decay``."""
    c = model.config
    groups = [dict(g) for g in first]
    taken = {id(p) for g in groups for p in g["params"]}
    for name, module in subnets.items():
        ps = [p for p in module.parameters() if p.requires_grad]
        taken.update(id(p) for p in ps)
        groups.append({"params": ps, "name": f"{name}_subnet", "weight_decay": getattr(c, f"{name}_weight_decay")})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    groups.append({"params": rest, "name": "other", "weight_decay": weight_decay})
    return groups


class MultiTaskHeads:
    """Mixin that turns a single-task model whose ``forward`` puts ``z_text``, ``z_audio``, ``z_vision`` in ``aux``
    into its multi-task version (MMSA's MLMF over LMF, MLF-DNN over LF-DNN): list it before the model class; it
    adds ``heads`` (:func:`unimodal_heads` over ``text_out``, ``audio_hidden``, ``vision_hidden``), the unimodal
    predictions and the weighted multi-task objective, and requires the dataset's unimodal labels."""

    needs_unimodal_labels = True

    def __init__(self, config):
        super().__init__(config)
        c = config
        self.heads = unimodal_heads(c, c.text_out, c.audio_hidden, c.vision_hidden)
        self.set_objective(multitask_objective(c))

    def forward(self, batch) -> ModelOutput:
        return with_unimodal(super().forward(batch), self.heads)
