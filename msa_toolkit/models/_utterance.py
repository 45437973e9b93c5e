"""What LMF and LF-DNN share: TFN's three modality subnetworks, their config fields and MMSA's preset layout.

Both models encode text with :class:`~msa_toolkit.layers.TextSubNet` and the time-averaged audio and vision
with :class:`~msa_toolkit.layers.UtteranceSubNet`, then fuse the three vectors their own way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._fields import doc
from ..layers import TextSubNet, UtteranceSubNet, build_text_encoder, text_features
from .base import ModelConfig, MSAModel

__all__ = ["SubNetsConfig", "SubNetsModel", "mmsa_subnets"]


@dataclass(frozen=True)
class SubNetsConfig(ModelConfig):
    """Fields of TFN's three modality subnetworks (base ``dropout`` unused: each part has its own)."""

    text_hidden: int = doc(128, "LSTM hidden size of the language subnetwork")
    text_out: int = doc(256, "output size of the language subnetwork")
    audio_hidden: int = doc(16, "hidden/output width of the audio subnetwork")
    vision_hidden: int = doc(128, "hidden/output width of the visual subnetwork")
    audio_dropout: float = doc(0.2, "dropout on the averaged audio input")
    vision_dropout: float = doc(0.2, "dropout on the averaged visual input")
    text_dropout: float = doc(0.2, "dropout on the language LSTM's last state (MMSA's one-layer TextSubNet "
                                   "sets it to 0, so the reference recipe does)")
    dropout: float = doc(0.1, "unused: the subnetworks and the fusion have their own dropouts")
    loss: str = doc("l1", "training criterion: l1 | mse")


def mmsa_subnets(hidden: tuple[int, int, int], text_out: int, dropouts: tuple[float, ...]) -> dict:
    """Config values from an MMSA entry's ``hidden_dims`` (text, audio, video) and ``dropouts`` (audio, video,
    text, ...)."""
    t, a, v = hidden
    return {"text_hidden": t, "text_out": text_out, "audio_hidden": a, "vision_hidden": v,
            "audio_dropout": dropouts[0], "vision_dropout": dropouts[1], "text_dropout": dropouts[2]}


class SubNetsModel(MSAModel):
    """Builds ``text_subnet``, ``audio_subnet``, ``vision_subnet`` (and the optional text encoder)."""

    def __init__(self, config: SubNetsConfig):
        super().__init__(config)
        c = config
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        self.audio_subnet = UtteranceSubNet(c.audio_dim, c.audio_hidden, c.audio_dropout)
        self.vision_subnet = UtteranceSubNet(c.vision_dim, c.vision_hidden, c.vision_dropout)
        self.text_subnet = TextSubNet(dt, c.text_hidden, c.text_out, c.text_dropout)

    def encode(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(z_t [B, text_out], z_a [B, audio_hidden], z_v [B, vision_hidden])."""
        return (self.text_subnet(text_features(self.text_encoder, batch), batch.text_mask),
                self.audio_subnet(batch.audio, batch.audio_mask),
                self.vision_subnet(batch.vision, batch.vision_mask))
