"""MTFN: the Tensor Fusion Network with unimodal heads, trained on CH-SIMS's unimodal labels (multi-task).

Paper: Yu et al., "CH-SIMS: A Chinese Multimodal Sentiment Analysis Dataset with Fine-grained Annotations of
Modality", ACL 2020 (the multi-task framework, here over TFN: Zadeh et al., EMNLP 2017). Checked against MMSA's
``src/MMSA/models/multiTask/MTFN.py`` and ``trains/multiTask/MTFN.py`` (thuiar/MMSA @ a94e65d), see
``benchmarks/parity/parity_mmsa_mtfn.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._fields import doc
from ..space import Choice, Float
from ..layers import TextSubNet, UtteranceSubNet, build_text_encoder, tensor_fusion, text_features
from ._registry import register_model
from ._multitask import (MultiTaskConfig, multitask_objective, subnet_param_groups, unimodal_head, unimodal_heads,
                         with_unimodal)
from .base import ModelConfig, ModelOutput, MSAModel
from .presets import SIMS_INPUTS

__all__ = ["MTFNConfig", "MTFN", "unimodal_head"]


@dataclass(frozen=True)
class MTFNConfig(MultiTaskConfig, ModelConfig):
    """MTFN (MMSA's multi-task TFN); base ``dropout`` unused (see the per-part dropouts)."""

    text_hidden: int = doc(128, "LSTM hidden size of the language subnetwork (MMSA hidden_dims[0])")
    text_out: int = doc(64, "output size of the language subnetwork (after its Linear)")
    audio_hidden: int = doc(16, "hidden/output width of the audio subnetwork (MMSA hidden_dims[1])")
    vision_hidden: int = doc(16, "hidden/output width of the visual subnetwork (MMSA hidden_dims[2])")
    audio_dropout: float = doc(0.2, "dropout at the input of the audio subnetwork (MMSA dropouts[0])")
    vision_dropout: float = doc(0.2, "dropout at the input of the visual subnetwork (MMSA dropouts[1])")
    text_dropout: float = doc(0.0, "dropout before the language subnetwork's Linear (MMSA resets its dropouts[2] "
                                   "to 0 for a 1-layer LSTM, so its runs have 0)")
    post_fusion_dim: int = doc(128, "width of the two post-fusion hidden layers")
    post_fusion_dropout: float = doc(0.2, "dropout before the post-fusion MLP (MMSA post_dropouts[3])")
    output_range: float = doc(6.0, "fused prediction = sigmoid(x) * output_range + output_shift, as MMSA's "
                                   "regression TFN/MTFN (0 = the linear output)")
    output_shift: float = doc(-3.0, "see output_range")
    dropout: float = doc(0.0, "unused: MTFN has the per-part dropouts above")
    loss: str = doc("l1", "criterion of every task: l1 | mse (MMSA: L1)")
    lr: float = doc(1e-3, "learning rate")


#: MMSA config_regression.json "mtfn" / "sims" (MMSA has no MOSI/MOSEI setting: those datasets carry no
#: unimodal labels)
_SIMS = {**SIMS_INPUTS, "text_hidden": 256, "audio_hidden": 32, "vision_hidden": 256, "text_out": 256,
         "post_fusion_dim": 64, "post_text_dim": 64, "post_audio_dim": 4, "post_vision_dim": 8,
         "audio_dropout": 0.2, "vision_dropout": 0.2, "text_dropout": 0.0, "post_text_dropout": 0.2,
         "post_audio_dropout": 0.2, "post_vision_dropout": 0.2, "post_fusion_dropout": 0.2, "batch_size": 64,
         "lr": 5e-3, "weight_M": 0.6, "weight_T": 0.4, "weight_A": 0.0, "weight_V": 1.0,
         "text_weight_decay": 1e-3, "audio_weight_decay": 1e-4, "vision_weight_decay": 1e-5, "weight_decay": 0.0}


#: `msa tune`'s default ranges: MMSA's MTFN tuning config (config_tune.json "mtfn": widths, head sizes, task
#: weights, batch size and learning rates as there; its dropouts 0.2-0.5 as a continuous range)
MTFN_SPACE = {"text_hidden": Choice(64, 128, 256), "audio_hidden": Choice(16, 32),
              "vision_hidden": Choice(64, 128, 256), "text_out": Choice(32, 64, 128, 256), "post_fusion_dim": Choice(16, 32, 64, 128),
              "post_text_dim": Choice(8, 16, 32, 64), "post_audio_dim": Choice(4, 5),
              "post_vision_dim": Choice(8, 16, 32, 64), "post_fusion_dropout": Float(0.2, 0.5),
              "batch_size": Choice(32, 64), "lr": Float(5e-4, 5e-3, log=True),
              "weight_M": Choice(0.2, 0.4, 0.6, 0.8, 1.0), "weight_T": Choice(0.0, 0.2, 0.4, 0.6, 0.8, 1.0),
              "weight_A": Choice(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), "weight_V": Choice(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)}


@register_model("mtfn", MTFNConfig, search_space=MTFN_SPACE,
                presets={"sims": _SIMS,
                         "tiny": {"text_hidden": 8, "text_out": 6, "audio_hidden": 6, "vision_hidden": 6,
                                  "post_fusion_dim": 8, "post_text_dim": 8, "post_audio_dim": 8, "post_vision_dim": 8,
                                  "audio_dropout": 0.0, "vision_dropout": 0.0, "post_fusion_dropout": 0.0,
                                  "post_text_dropout": 0.0, "post_audio_dropout": 0.0,
                                  "post_vision_dropout": 0.0}},
                summary="Multi-task TFN with unimodal heads on label_T/A/V (Yu et al., 2020; MMSA MTFN)")
class MTFN(MSAModel):
    """TFN's subnetworks and tensor fusion, plus one head per modality trained on that modality's label.

    Language: LSTM over the text sequence, state at the last valid step, Dropout + Linear -> z_t [B, text_out].
    Audio / vision: masked mean over time + 3-layer MLP -> z_a, z_v (TFN's subnetworks, ``layers.recurrent``).
    Fused: MLP over the flattened outer product ``[z_t;1] x [z_a;1] x [z_v;1]``, squashed by
    ``sigmoid · output_range + output_shift``: ``prediction`` [B]. Unimodal: one MLP head per z_m:
    ``aux["prediction_T" | "prediction_A" | "prediction_V"]`` [B]. Loss: L1 per task, weighted by
    ``weight_M/T/A/V`` (:class:`MultiTaskObjective`); a dataset without label_T/A/V is refused before training.

    Deviations from MMSA's MTFN (the parity script bridges them): a LayerNorm instead of BatchNorm1d at the
    subnetworks' input (as the toolkit's TFN: batch-size-1 safe); audio/vision averaged over their valid steps
    (MMSA's loader averages over every stored step, padding included); the LSTM state at the last valid text
    step (MMSA: the state after the padded sequence); the fusion tensor's index order is (text, audio,
    vision) with the constant 1 last (MMSA: audio, vision, text, 1 first), a permutation of the first
    post-fusion layer's inputs.
    """

    needs_unimodal_labels = True

    def __init__(self, config: MTFNConfig):
        super().__init__(config)
        c = config
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        self.text_net = TextSubNet(dt, c.text_hidden, c.text_out, c.text_dropout)
        self.audio_net = UtteranceSubNet(c.audio_dim, c.audio_hidden, c.audio_dropout)
        self.vision_net = UtteranceSubNet(c.vision_dim, c.vision_hidden, c.vision_dropout)
        fused = (c.text_out + 1) * (c.audio_hidden + 1) * (c.vision_hidden + 1)
        self.post = unimodal_head(fused, c.post_fusion_dim, c.post_fusion_dropout)
        self.heads = unimodal_heads(c, c.text_out, c.audio_hidden, c.vision_hidden)
        self.set_objective(multitask_objective(c))

    def forward(self, batch) -> ModelOutput:
        c = self.config
        z = {"T": self.text_net(text_features(self.text_encoder, batch), batch.text_mask),
             "A": self.audio_net(batch.audio, batch.audio_mask),
             "V": self.vision_net(batch.vision, batch.vision_mask)}
        fused = self.post(tensor_fusion(z["T"], z["A"], z["V"])).squeeze(-1)
        if c.output_range:
            fused = torch.sigmoid(fused) * c.output_range + c.output_shift
        return with_unimodal(ModelOutput(fused, {"z_text": z["T"], "z_audio": z["A"], "z_vision": z["V"]}), self.heads)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """MMSA's groups: the language, audio and visual subnetworks with their own weight decay, the rest
        (heads, fusion MLP, a fine-tuned text encoder) with ``weight_decay``."""
        return subnet_param_groups(self, {"text": self.text_net, "audio": self.audio_net, "vision": self.vision_net},
                                   weight_decay)
