"""CENET: Cross-modal Enhancement Network (Wang et al., IEEE Transactions on Multimedia 2023, "Cross-modal
Enhancement Network for Multimodal Sentiment Analysis").

A cross-modal enhancement (CE) module inside BERT: after BERT's first layer, each text token queries the
visual and the acoustic sequences (each projected to BERT's width by a two-layer MLP) with single-head
attention; the two attended vectors are concatenated, projected back to BERT's width and added to the token's
state, which then runs through BERT's remaining layers. A classification head (dropout, Linear, tanh,
dropout, Linear) on the first ([CLS]) token gives the score.

With ``text_encoder`` set, the CE module sits inside that fine-tuned encoder (a BERT-family model with an
``encoder.layer`` list) after layer ``injection_layer``; without one, the model runs on the dataset's token
features (e.g. frozen BERT states): CE enhances them and the head reads the first token.

Checked against MMSA's ``models/singleTask/CENET.py`` (thuiar/MMSA @ a94e65d) by
``benchmarks/parity/parity_mmsa_cenet.py``; presets from MMSA's ``config/config_regression.json`` ("cenet").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .._fields import doc
from ..layers import Dropout, MultiHeadAttention, build_text_encoder
from ..space import Choice, Float
from ._registry import register_model
from .base import ModelConfig, ModelOutput, MSAModel, RegressionObjective
from .presets import MOSEI_INPUTS, MOSI_INPUTS, SIMS_INPUTS

__all__ = ["CENETConfig", "CENET", "CrossModalEnhancement"]


@dataclass(frozen=True)
class CENETConfig(ModelConfig):
    """CENET (base ``dropout`` is the head's dropout, BERT's hidden_dropout_prob 0.1 in MMSA)."""

    injection_layer: int = doc(1, "the CE module enhances the input of this BERT layer (MMSA injection_index 1: "
                                  "after the first layer); 0 = on the embeddings")
    attention_scale: float = doc(8.0, "multiplier of the CE attention scores (MMSA: 8, not 1/sqrt(d))")
    freeze_embeddings: bool = doc(True, "keep the text encoder's embedding layer fixed (MMSA computes BERT's "
                                        "embeddings under no_grad)")
    dropout: float = doc(0.1, "dropout of the classification head (BERT's hidden_dropout_prob)")
    loss: str = doc("l1", "training criterion: l1 (MMSA) | mse")
    optimizer: str = doc("adam", "optimiser (MMSA: Adam)")
    lr: float = doc(1e-5, "learning rate of every group (MMSA mosi learning_rate)")
    weight_decay: float = doc(1e-4, "weight decay of the weights (no decay on biases and LayerNorm weights)")
    batch_size: int = doc(64, "training batch size")
    grad_clip_norm: float = doc(2.0, "clip the global gradient norm (MMSA max_grad_norm)")


class CrossModalEnhancement(nn.Module):
    """CE: ``text + W_c [attn(text, MLP_v(vision)); attn(text, MLP_a(audio))]``.

    Each attention is single-head, its queries from the text states and keys/values from the transformed
    modality, no output projection, scores scaled by ``scale``; keys are the modality's valid steps.
    ``forward(text [B, Lt, H], vision [B, Lv, Dv], vision_mask, audio [B, La, Da], audio_mask) -> [B, Lt, H]``.
    """

    def __init__(self, hidden: int, vision_dim: int, audio_dim: int, scale: float):
        super().__init__()

        def mlp(d: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

        self.vision_transform, self.audio_transform = mlp(vision_dim), mlp(audio_dim)
        self.vision_attention = MultiHeadAttention(hidden, 1, scale=scale, out_proj=False)
        self.audio_attention = MultiHeadAttention(hidden, 1, scale=scale, out_proj=False)
        self.cat_connect = nn.Linear(2 * hidden, hidden)

    def forward(self, text: torch.Tensor, vision: torch.Tensor, vision_mask: torch.Tensor | None,
                audio: torch.Tensor, audio_mask: torch.Tensor | None) -> torch.Tensor:
        v, a = self.vision_transform(vision), self.audio_transform(audio)
        hv = self.vision_attention(text, v, v, vision_mask)
        ha = self.audio_attention(text, a, a, audio_mask)
        return self.cat_connect(torch.cat([hv, ha], dim=-1)) + text


#: `msa tune`'s default ranges: MMSA's CENET tuning config (config_tune.json "cenet"): learning rates as a log
#: range over its list (1e-6 .. 5e-5), weight decay and batch size as there (max_grad_norm is 2 there, as the
#: presets; adam_epsilon is no toolkit setting)
CENET_SPACE = {"lr": Float(1e-6, 5e-5, log=True), "weight_decay": Choice(0.0, 1e-4), "batch_size": Choice(32, 64, 128)}


@register_model("cenet", CENETConfig, search_space=CENET_SPACE, presets={
    # MMSA config_regression.json "cenet".datasetParams.<dataset> (pretrained bert-base-uncased / -chinese: pass
    # it as model.text_encoder); adam_epsilon (3e-8 / 1e-8 / 2e-8) is not a toolkit setting (Adam's 1e-8)
    "mosi": {**MOSI_INPUTS, "lr": 1e-5, "weight_decay": 1e-4, "grad_clip_norm": 2.0, "batch_size": 64},
    "mosei": {**MOSEI_INPUTS, "lr": 1e-5, "weight_decay": 1e-4, "grad_clip_norm": 2.0, "batch_size": 64},
    "sims": {**SIMS_INPUTS, "lr": 2e-6, "weight_decay": 0.0, "grad_clip_norm": 2.0, "batch_size": 32},
    "tiny": {"dropout": 0.0},
}, summary="Cross-modal Enhancement Network inside BERT (Wang et al., 2023)")
class CENET(MSAModel):
    """CENET. Shapes: text tokens [B, Lt] (or features [B, Lt, H]), audio [B, La, Da], vision [B, Lv, Dv]
    -> prediction [B]; aux ``cls`` [B, H] (the enhanced-and-encoded first token).

    Deviations from MMSA: the CE attention ignores padded audio/visual steps (MMSA has no masks); MMSA's BERT
    also builds POS-tag, sentiment-word and polarity embedding tables that it never feeds (not built here);
    Adam's epsilon is torch's default. The head's dropout is ``dropout``.
    """

    def __init__(self, config: CENETConfig):
        super().__init__(config)
        c = config
        self.text_encoder, hidden = build_text_encoder(c.text_encoder, c.text_dim)
        if self.text_encoder is not None:
            bert = self.text_encoder.model
            layers = getattr(getattr(bert, "encoder", None), "layer", None)
            if not isinstance(layers, nn.ModuleList) or not hasattr(bert, "embeddings"):
                raise ValueError(f"CENET needs a BERT-family text encoder (embeddings + encoder.layer); "
                                 f"{c.text_encoder!r} has not both")
            if not 0 <= c.injection_layer < len(layers):
                raise ValueError(f"model.injection_layer must be in [0, {len(layers) - 1}], got {c.injection_layer}")
            if c.freeze_embeddings:
                bert.embeddings.requires_grad_(False)
        self.ce = CrossModalEnhancement(hidden, c.vision_dim, c.audio_dim, c.attention_scale)
        self.head = nn.Sequential(Dropout(c.dropout), nn.Linear(hidden, hidden), nn.Tanh(), Dropout(c.dropout),
                                  nn.Linear(hidden, 1))
        self.set_objective(RegressionObjective(c.loss))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """MMSA's groups: weight decay on the CE module and on every other weight but biases and LayerNorm weights
        (names containing "bias" or "LayerNorm.weight", as MMSA matches them)."""
        decay, no_decay = [], []
        for n, p in self.named_parameters():
            if p.requires_grad:
                plain = n.startswith("ce.") or not any(s in n for s in ("bias", "LayerNorm.weight"))
                (decay if plain else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def _enhance(self, batch):
        return lambda h: self.ce(h, batch.vision, batch.vision_mask, batch.audio, batch.audio_mask)

    def forward(self, batch) -> ModelOutput:
        if self.text_encoder is None:
            states = self._enhance(batch)(batch.text)
        else:
            if batch.text_tokens is None:
                raise ValueError("this model fine-tunes a text encoder (config.text_encoder is set) but the batch "
                                 "has no text_tokens; build the dataset with token ids")
            bert, enhance = self.text_encoder.model, self._enhance(batch)
            k = self.config.injection_layer
            where = bert.embeddings if k == 0 else bert.encoder.layer[k - 1]

            def hook(module, args, out):
                return (enhance(out[0]), *out[1:]) if isinstance(out, tuple) else enhance(out)

            handle = where.register_forward_hook(hook)
            try:
                states = self.text_encoder(batch.text_tokens, batch.text_mask)
            finally:
                handle.remove()
        cls = states[:, 0]
        return ModelOutput(self.head(cls).squeeze(-1), {"cls": cls})
