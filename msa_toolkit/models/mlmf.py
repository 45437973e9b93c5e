"""MLMF: Low-rank Multimodal Fusion with unimodal heads, trained on CH-SIMS's unimodal labels (multi-task).

Paper: Yu et al., "CH-SIMS: A Chinese Multimodal Sentiment Analysis Dataset with Fine-grained Annotations of
Modality", ACL 2020 (the multi-task framework, here over LMF: Liu et al., ACL 2018). Checked against MMSA's
``src/MMSA/models/multiTask/MLMF.py`` and ``trains/multiTask/MLMF.py`` (thuiar/MMSA @ a94e65d), see
``benchmarks/parity/parity_mmsa_mlmf.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._fields import doc
from ..space import Choice, Float
from ._multitask import MultiTaskConfig, MultiTaskHeads, subnet_param_groups
from ._registry import register_model
from .lmf import LMF, LMFConfig
from .presets import SIMS_INPUTS

__all__ = ["MLMFConfig", "MLMF"]


@dataclass(frozen=True)
class MLMFConfig(MultiTaskConfig, LMFConfig):
    """MLMF (MMSA's multi-task LMF); base ``dropout`` unused (see the per-part dropouts)."""

    weight_decay: float = doc(5e-3, "weight decay of the factors, the rank weights and the heads")


#: MMSA config_regression.json "mlmf" / "sims": hidden_dims (256, 32, 256), text_out = 128 (MMSA: hidden // 2),
#: dropouts 0.3 (audio, video; its text dropout is reset to 0 by the one-layer LSTM), post_dropouts 0.4
#: (MMSA has no MOSI/MOSEI setting: those datasets carry no unimodal labels)
_SIMS = {**SIMS_INPUTS, "text_hidden": 256, "audio_hidden": 32, "vision_hidden": 256, "text_out": 128,
         "post_text_dim": 8, "post_audio_dim": 4, "post_vision_dim": 32, "audio_dropout": 0.3,
         "vision_dropout": 0.3, "text_dropout": 0.0, "post_text_dropout": 0.4, "post_audio_dropout": 0.4,
         "post_vision_dropout": 0.4, "rank": 3, "batch_size": 128, "lr": 1e-3, "factor_lr": 1e-3,
         "weight_M": 0.2, "weight_T": 1.0, "weight_A": 0.4, "weight_V": 0.8, "text_weight_decay": 1e-4,
         "audio_weight_decay": 0.0, "vision_weight_decay": 1e-4, "weight_decay": 5e-3}

#: `msa tune`'s default ranges: MMSA's MLMF tuning config (config_tune.json "mlmf": rank, head sizes, task
#: weights, batch size and both learning rates as there; its hidden_dims as the text/vision and audio widths, and
#: text_out over the values hidden_dims[0] // 2 takes there)
MLMF_SPACE = {"text_hidden": Choice(64, 128, 256), "text_out": Choice(32, 64, 128), "audio_hidden": Choice(16, 32),
              "vision_hidden": Choice(64, 128, 256), "rank": Choice(3, 4, 5, 6),
              "post_text_dim": Choice(8, 16, 32, 64), "post_audio_dim": Choice(4, 5),
              "post_vision_dim": Choice(8, 16, 32, 64), "batch_size": Choice(32, 64, 128),
              "lr": Float(5e-4, 5e-3, log=True), "factor_lr": Float(1e-4, 1e-3, log=True),
              "weight_M": Choice(0.2, 0.4, 0.6, 0.8, 1.0), "weight_T": Choice(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
              "weight_A": Choice(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), "weight_V": Choice(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)}


@register_model("mlmf", MLMFConfig, search_space=MLMF_SPACE,
                presets={"sims": _SIMS,
                         "tiny": {"text_hidden": 16, "text_out": 8, "audio_hidden": 8, "vision_hidden": 8, "rank": 4,
                                  "post_text_dim": 8, "post_audio_dim": 8, "post_vision_dim": 8,
                                  "audio_dropout": 0.0, "vision_dropout": 0.0, "text_dropout": 0.0,
                                  "post_text_dropout": 0.0, "post_audio_dropout": 0.0, "post_vision_dropout": 0.0}},
                summary="Multi-task LMF with unimodal heads on label_T/A/V (Yu et al., 2020; MMSA MLMF)")
class MLMF(MultiTaskHeads, LMF):
    """LMF's subnetworks and low-rank fusion, plus one head per modality trained on that modality's label.

    z_t, z_a, z_v and the fused prediction as :class:`~msa_toolkit.models.lmf.LMF` (linear output, as MMSA's
    MLMF). Unimodal: one ``Dropout -> Linear -> ReLU -> Linear -> ReLU -> Linear`` head per z_m:
    ``aux["prediction_T" | "prediction_A" | "prediction_V"]`` [B]. Loss: L1 per task, weighted by
    ``weight_M/T/A/V`` (:class:`~msa_toolkit.models.base.MultiTaskObjective`); a dataset without label_T/A/V is
    refused before training (:class:`~msa_toolkit.models._multitask.MultiTaskHeads`).

    Deviations from MMSA's MLMF: LMF's (LayerNorm instead of BatchNorm1d at the subnetworks' input, masked means
    and the LSTM state at the last valid step); ``text_out`` is its own field (MMSA: text_hidden // 2, as
    the ``sims`` preset has it; the search space draws the two independently); MMSA's post_dropouts[3] is never used by its
    MLMF (no post-fusion layer), so it has no field.
    """

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """MMSA's groups: the three factors at ``factor_lr`` (with ``weight_decay``), the language, audio and
        visual subnetworks with their own weight decay, the rest (heads; the rank weights and output bias unless
        frozen by ``train_fusion_weights=False``, as MMSA's lr-0 group does) with ``weight_decay``."""
        factors = {"params": [self.audio_factor, self.vision_factor, self.text_factor], "name": "factors",
                   "lr": self.config.factor_lr, "weight_decay": weight_decay}
        return subnet_param_groups(self, {"text": self.text_subnet, "audio": self.audio_subnet,
                                          "vision": self.vision_subnet}, weight_decay, [factors])
