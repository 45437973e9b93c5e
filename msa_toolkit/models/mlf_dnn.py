"""MLF-DNN: the late-fusion DNN with unimodal heads, trained on CH-SIMS's unimodal labels (multi-task).

Paper: Yu et al., "CH-SIMS: A Chinese Multimodal Sentiment Analysis Dataset with Fine-grained Annotations of
Modality", ACL 2020 (the multi-task framework, here over LF-DNN). Checked against MMSA's
``src/MMSA/models/multiTask/MLF_DNN.py`` and ``trains/multiTask/MLF_DNN.py`` (thuiar/MMSA @ a94e65d), see
``benchmarks/parity/parity_mmsa_mlf_dnn.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._fields import doc
from ..space import Choice, Float
from ._multitask import MultiTaskConfig, MultiTaskHeads, subnet_param_groups
from ._registry import register_model
from .lf_dnn import LFDNN, LFDNNConfig
from .presets import SIMS_INPUTS

__all__ = ["MLFDNNConfig", "MLFDNN"]


@dataclass(frozen=True)
class MLFDNNConfig(MultiTaskConfig, LFDNNConfig):
    """MLF-DNN (MMSA's multi-task LF-DNN); base ``dropout`` unused (see the per-part dropouts)."""

    post_fusion_dropout: float = doc(0.2, "dropout on the concatenated modality representations (MMSA "
                                          "post_dropouts[3])")
    weight_decay: float = doc(1e-2, "weight decay of the post-fusion MLP and the heads")


#: MMSA config_regression.json "mlf_dnn" / "sims" (MMSA has no MOSI/MOSEI setting: those datasets carry no
#: unimodal labels); its text dropout is reset to 0 by the one-layer LSTM
_SIMS = {**SIMS_INPUTS, "text_hidden": 64, "audio_hidden": 32, "vision_hidden": 64, "text_out": 32,
         "post_fusion_dim": 32, "post_text_dim": 16, "post_audio_dim": 4, "post_vision_dim": 32,
         "audio_dropout": 0.3, "vision_dropout": 0.3, "text_dropout": 0.0, "post_text_dropout": 0.5,
         "post_audio_dropout": 0.5, "post_vision_dropout": 0.5, "post_fusion_dropout": 0.5, "batch_size": 32,
         "lr": 2e-3, "weight_M": 0.6, "weight_T": 0.2, "weight_A": 0.8, "weight_V": 0.8,
         "text_weight_decay": 1e-4, "audio_weight_decay": 1e-3, "vision_weight_decay": 1e-4, "weight_decay": 0.0}

#: `msa tune`'s default ranges: MMSA's MLF-DNN tuning config (config_tune.json "mlf_dnn": widths, head sizes,
#: task weights, batch size and learning rates as there; its dropouts 0.2-0.5 as a continuous range)
MLF_DNN_SPACE = {"text_hidden": Choice(64, 128, 256), "audio_hidden": Choice(16, 32),
                 "vision_hidden": Choice(64, 128, 256), "text_out": Choice(32, 64, 128, 256),
                 "post_fusion_dim": Choice(16, 32, 64, 128), "post_text_dim": Choice(8, 16, 32, 64),
                 "post_audio_dim": Choice(4, 5), "post_vision_dim": Choice(8, 16, 32, 64),
                 "post_fusion_dropout": Float(0.2, 0.5), "batch_size": Choice(32, 64, 128),
                 "lr": Float(5e-4, 5e-3, log=True), "weight_M": Choice(0.2, 0.4, 0.6, 0.8, 1.0),
                 "weight_T": Choice(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), "weight_A": Choice(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
                 "weight_V": Choice(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)}


@register_model("mlf_dnn", MLFDNNConfig, search_space=MLF_DNN_SPACE,
                presets={"sims": _SIMS,
                         "tiny": {"text_hidden": 8, "text_out": 8, "audio_hidden": 4, "vision_hidden": 4,
                                  "post_fusion_dim": 8, "post_text_dim": 8, "post_audio_dim": 8,
                                  "post_vision_dim": 8, "audio_dropout": 0.0, "vision_dropout": 0.0,
                                  "text_dropout": 0.0, "post_fusion_dropout": 0.0, "post_text_dropout": 0.0,
                                  "post_audio_dropout": 0.0, "post_vision_dropout": 0.0}},
                summary="Multi-task LF-DNN with unimodal heads on label_T/A/V (Yu et al., 2020; MMSA MLF-DNN)")
class MLFDNN(MultiTaskHeads, LFDNN):
    """LF-DNN's subnetworks and post-fusion MLP, plus one head per modality trained on that modality's label.

    z_t, z_a, z_v and the fused prediction as :class:`~msa_toolkit.models.lf_dnn.LFDNN` (linear output, as
    MMSA's MLF-DNN). Unimodal: one ``Dropout -> Linear -> ReLU -> Linear -> ReLU -> Linear`` head per z_m:
    ``aux["prediction_T" | "prediction_A" | "prediction_V"]`` [B]. Loss: L1 per task, weighted by
    ``weight_M/T/A/V`` (:class:`~msa_toolkit.models.base.MultiTaskObjective`); a dataset without label_T/A/V is
    refused before training (:class:`~msa_toolkit.models._multitask.MultiTaskHeads`).

    Deviations from MMSA's MLF-DNN: LF-DNN's (LayerNorm instead of BatchNorm1d at the subnetworks' input,
    masked means and the LSTM state at the last valid step, the concatenation order text, audio, vision: a
    permutation of the first post-fusion layer's columns).
    """

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """MMSA's groups: the language, audio and visual subnetworks with their own weight decay, the rest
        (post-fusion MLP, heads, a fine-tuned text encoder) with ``weight_decay``."""
        return subnet_param_groups(self, {"text": self.text_subnet, "audio": self.audio_subnet,
                                          "vision": self.vision_subnet}, weight_decay)
