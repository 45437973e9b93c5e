"""ALMT: Adaptive Language-guided Multimodal Transformer (Zhang et al., EMNLP 2023, arXiv 2310.05804).

Pipeline (``d = config.dim``, ``T = config.token_len``; all sequences batch-first)::

    x_m [B, L_m, D_m] --Linear--> [B, L_m, d]
      --modality embedding: [T learned tokens; sequence] + learned positions, 1 pre-LN layer--> first T
      --> h_m [B, T, d]                                                              (m = text, audio, vision)
    language encoder (ahl_depth - 1 pre-LN layers over h_t + positions) keeps every hidden state:
      h_t^1 (input), h_t^2, ..., h_t^{ahl_depth}  [B, T, d]                           (multi-scale language)
    Adaptive Hyper-modality Learning, layer i = 1..ahl_depth (H^0 = learned, initialised to ones):
      H^i = LN(H^{i-1}) + W_o( Attn(LN(h_t^i) W_q, LN(h_a) W_ka, LN(h_a) W_va)
                               + Attn(LN(h_t^i) W_q, LN(h_v) W_kv, LN(h_v) W_vv) )
    cross-modality fusion transformer (fusion_depth layers): query = [cls; h_t^{last}],
      key/value = [cls; H] (each with its own learned positions) -> state of cls [B, d]
    prediction = nn.Linear(d, 1)                                                         -> [B]

Objective: MSE (the reference's criterion; ``loss="l1"`` is available). Training recipe of
the reference (presets): AdamW, lr 1e-4, weight decay 1e-4, batch 64, 10 % linear warm-up
then cosine decay.

Parameter count: with the ``mosi`` preset (lengths 50/375/500, dims 768/5/20) and the text
encoder excluded this implementation has exactly the reference's 2,603,649 parameters
(`benchmarks/param_counts.py`); the parameter layout (per-head dim 64 in the embedding,
language-encoder and fusion attention, 16 in the AHL layers; separate LayerNorms for
query, key and value; learned positions for ``L_m + T`` steps) follows the authors'
published configuration.

Deviations from the paper / the authors' reference behaviour:

1. Key padding masks: in the modality embedding the learned tokens and sequence steps
   attend only over valid steps (the reference attends over zero padding). An absent
   modality therefore contributes only its learned tokens, and nothing can be NaN.
2. Frozen precomputed text features by default; ``text_encoder`` fine-tunes a BERT-family
   encoder as the reference does (it always fine-tunes ``bert-base-uncased``).
3. The learning-rate schedule is stepped by the project's trainer (per step or epoch, its
   choice); the reference steps its warm-up/cosine scheduler once per epoch over 200 epochs.
4. The reference replaces the attention output projection by the identity when
   ``heads == 1 and dim_head == dim``; here the projection is always present.

Gradient note (``grad_exempt``): the hyper-modality state starts as the constant ones
vector (as in the reference), whose LayerNorm is exactly zero, so the gain of the first
AHL layer's hyper-modality LayerNorm receives no gradient until that state has moved
(after the first optimiser step). The registry test excludes that one parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .._fields import doc
from ._registry import register_model
from .base import ModelConfig, ModelOutput, MSAModel, RegressionObjective
from ..layers import (Dropout, LearnedPositionalEncoding, MultiHeadAttention, activation, attend, build_text_encoder,
                      text_features, unpadded)
from .presets import MOSEI_INPUTS, MOSI_INPUTS
from ..space import Choice, Float, Int

__all__ = ["ALMTConfig", "ALMT", "ALMTBlock", "TokenEmbedding", "LanguageEncoder", "AHLLayer", "FusionTransformer"]


@dataclass(frozen=True)
class ALMTConfig(ModelConfig):
    """ALMT hyper-parameters; defaults = the authors' CMU-MOSI setting."""

    dim: int = doc(128, "token / model width d")
    token_len: int = doc(8, "number of learned tokens each modality is embedded into")
    heads: int = doc(8, "attention heads of the modality embeddings and the language encoder")
    dim_head: int = doc(64, "per-head dim of the modality-embedding and language-encoder attention")
    mlp_dim: int = doc(128, "hidden width of every feed-forward block")
    embed_depth: int = doc(1, "pre-LN layers of each modality-embedding transformer")
    ahl_depth: int = doc(3, "AHL layers; the language encoder has ahl_depth - 1 layers (one language scale per "
                            "AHL layer)")
    ahl_heads: int = doc(8, "AHL attention heads")
    ahl_dim_head: int = doc(16, "per-head dim of the AHL attention")
    fusion_depth: int = doc(2, "layers of the cross-modality fusion transformer (reference: MOSI 2, MOSEI 4)")
    fusion_heads: int = doc(8, "attention heads of the fusion transformer")
    fusion_dim_head: int = doc(64, "per-head dim of the fusion-transformer attention")
    dropout: float = doc(0.0, "dropout after attention and feed-forward layers (reference: 0)")
    emb_dropout: float = doc(0.0, "dropout on each transformer's input after adding positions (reference: 0)")
    loss: str = doc("mse", "training criterion: mse (reference) | l1")
    optimizer: str = doc("adamw", "optimiser (reference: adamw)")
    lr: float = doc(1e-4, "learning rate (reference: 1e-4)")
    weight_decay: float = doc(1e-4, "weight decay (reference: 1e-4)")
    batch_size: int = doc(64, "training batch size (reference: 64)")
    scheduler: str = doc("cosine", "learning-rate schedule (reference: linear warm-up then cosine decay)")
    warmup_ratio: float = doc(0.1, "fraction of the optimiser steps of linear warm-up (reference: 10 %)")


class ALMTBlock(nn.Module):
    """ALMT's pre-LN transformer layer: separate LayerNorms on query, key and value, then a GELU MLP.

    ``forward(x [B, Lq, d], context [B, Lk, d] | None, key_mask [B, Lk] | None) -> [B, Lq, d]``
    (self-attention when ``context`` is None).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm_q, self.norm_k, self.norm_v = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, heads, dim_head=dim_head, qkv_bias=False, out_bias=True)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, mlp_dim), activation("gelu"), Dropout(dropout),
                                nn.Linear(mlp_dim, dim), Dropout(dropout))
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        kv = x if context is None else context
        x = x + self.drop(self.attn(self.norm_q(x), self.norm_k(kv), self.norm_v(kv), key_mask))
        return x + self.ff(self.norm_ff(x))


class TokenEmbedding(nn.Module):
    """Embeds a variable-length sequence into ``token_len`` learned tokens.

    ``forward(x [B, L, d], mask [B, L]) -> [B, token_len, d]``: learned tokens are
    prepended, learned positions for ``max_len + token_len`` steps added, ``depth``
    :class:`ALMTBlock` layers run with padded steps masked as keys, and the token
    states are returned.
    """

    def __init__(self, max_len: int, token_len: int, dim: int, depth: int, heads: int, dim_head: int,
                 mlp_dim: int, dropout: float = 0.0, emb_dropout: float = 0.0):
        super().__init__()
        self.token_len = token_len
        self.tokens = nn.Parameter(torch.zeros(token_len, dim))
        self.pos = LearnedPositionalEncoding(max_len + token_len, dim)
        self.drop = Dropout(emb_dropout)
        self.blocks = nn.ModuleList([ALMTBlock(dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth)])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B = x.shape[0]
        x = torch.cat([self.tokens.unsqueeze(0).expand(B, -1, -1), x], dim=1)
        x = self.drop(x + self.pos(x))
        key_mask, mask = None, unpadded(mask)  # no masking work for a batch without padding (CPU)
        if mask is not None:
            key_mask = torch.cat([mask.new_ones(B, self.token_len), mask], dim=1)
        if not self.blocks:
            return x[:, : self.token_len]
        *inner, last = self.blocks
        for blk in inner:
            x = blk(x, key_mask=key_mask)
        # only the token states are returned: the last layer computes just their rows (queries over every
        # step as keys/values, the feed-forward on those rows), the same values with L / token_len less work
        return last(x[:, : self.token_len], context=x, key_mask=key_mask)


class LanguageEncoder(nn.Module):
    """Multi-scale language features: learned positions + ``depth`` layers, every hidden state kept.

    ``forward(h_t [B, T, d]) -> list of depth + 1 tensors [B, T, d]`` (input scale first).
    """

    def __init__(self, token_len: int, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int,
                 dropout: float = 0.0, emb_dropout: float = 0.0):
        super().__init__()
        self.pos = LearnedPositionalEncoding(token_len, dim)
        self.drop = Dropout(emb_dropout)
        self.blocks = nn.ModuleList([ALMTBlock(dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth)])

    def forward(self, h: torch.Tensor) -> list[torch.Tensor]:
        h = self.drop(h + self.pos(h))
        states = [h]
        for blk in self.blocks:
            h = blk(h)
            states.append(h)
        return states


class AHLLayer(nn.Module):
    """Adaptive Hyper-modality Learning layer.

    Language queries attend separately over audio and vision tokens (shared query
    projection, own key/value projections); the summed results are projected and added
    to the (LayerNormed) hyper-modality state.
    ``forward(h_t, h_a, h_v, h_hyper) -> h_hyper'`` (all [B, T, d]).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.norm_text, self.norm_audio = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm_vision, self.norm_hyper = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k_audio, self.to_v_audio = nn.Linear(dim, inner, bias=False), nn.Linear(dim, inner, bias=False)
        self.to_k_vision, self.to_v_vision = nn.Linear(dim, inner, bias=False), nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), Dropout(dropout))

    def forward(self, h_t: torch.Tensor, h_a: torch.Tensor, h_v: torch.Tensor, h_hyper: torch.Tensor) -> torch.Tensor:
        q = self.to_q(self.norm_text(h_t))
        a, v = self.norm_audio(h_a), self.norm_vision(h_v)
        out = attend(q, self.to_k_audio(a), self.to_v_audio(a), self.heads) + \
            attend(q, self.to_k_vision(v), self.to_v_vision(v), self.heads)
        return self.norm_hyper(h_hyper) + self.to_out(out)


class FusionTransformer(nn.Module):
    """Cross-modality fusion: target (language) queries over source (hyper-modality) keys/values.

    A learned class token is prepended to both sequences (one shared token, separate
    learned positions); returns the class-token state of the target after ``depth``
    :class:`ALMTBlock` cross-attention layers. ``forward(source [B, Ls, d], target [B, Lt, d]) -> [B, d]``.
    """

    def __init__(self, source_len: int, target_len: int, dim: int, depth: int, heads: int, dim_head: int,
                 mlp_dim: int, dropout: float = 0.0, emb_dropout: float = 0.0):
        super().__init__()
        self.pos_source = LearnedPositionalEncoding(source_len + 1, dim)
        self.pos_target = LearnedPositionalEncoding(target_len + 1, dim)
        self.cls = nn.Parameter(torch.zeros(1, dim))
        self.drop = Dropout(emb_dropout)
        self.blocks = nn.ModuleList([ALMTBlock(dim, heads, dim_head, mlp_dim, dropout) for _ in range(depth)])

    def forward(self, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        cls = self.cls.unsqueeze(0).expand(source.shape[0], -1, -1)
        s = torch.cat([cls, source], dim=1)
        t = torch.cat([cls, target], dim=1)
        s, t = self.drop(s + self.pos_source(s)), self.drop(t + self.pos_target(t))
        for blk in self.blocks:
            t = blk(t, context=s)
        return t[:, 0]


#: the authors' published settings
ALMT_PRESETS = {
    "mosi": {**MOSI_INPUTS, "fusion_depth": 2},
    "mosei": {**MOSEI_INPUTS, "fusion_depth": 4},
    # for tests and quick experiments
    "tiny": {"dim": 16, "token_len": 2, "heads": 2, "dim_head": 8, "mlp_dim": 16, "ahl_heads": 2,
             "ahl_dim_head": 8, "fusion_depth": 1, "fusion_heads": 2, "fusion_dim_head": 8},
}


#: `msa tune`'s default ranges, around the paper's settings (lr 1e-4, AdamW wd 1e-4, batch 64, 8 tokens, fusion depth
#: 2 on MOSI / 4 on MOSEI, dropout 0); MMSA has no ALMT tuning config
ALMT_SPACE = {"lr": Float(3e-5, 1e-3, log=True), "weight_decay": Float(1e-5, 1e-2, log=True),
              "batch_size": Choice(32, 64, 128), "warmup_ratio": Float(0.0, 0.2), "token_len": Choice(4, 8, 16),
              "ahl_depth": Int(2, 4), "fusion_depth": Int(1, 4), "dropout": Float(0.0, 0.3),
              "emb_dropout": Float(0.0, 0.3)}


@register_model("almt", ALMTConfig, presets=ALMT_PRESETS, search_space=ALMT_SPACE,
                summary="ALMT: Adaptive Language-guided Multimodal Transformer (Zhang et al., EMNLP 2023)")
class ALMT(MSAModel):
    """ALMT model. ``forward(batch) -> ModelOutput(prediction [B], aux)``.

    ``aux``: ``hyper`` [B, T, d] (final hyper-modality state), ``fused`` [B, d] (fusion
    class-token state), ``tokens_text`` / ``tokens_audio`` / ``tokens_vision`` [B, T, d]
    (the learned-token embeddings of each modality).
    See the module docstring for the architecture, parameter count and deviations.
    """

    #: parameters legitimately without gradient on the first step (see module docstring)
    grad_exempt: ClassVar[tuple[str, ...]] = ("ahl.0.norm_hyper.weight",)

    def __init__(self, config: ALMTConfig):
        super().__init__(config)
        c = config
        if c.ahl_depth < 1:
            raise ValueError("ahl_depth must be >= 1")
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        d, T = c.dim, c.token_len
        self.hyper = nn.Parameter(torch.ones(T, d))
        self.input_proj = nn.ModuleDict({"text": nn.Linear(dt, d), "audio": nn.Linear(c.audio_dim, d),
                                         "vision": nn.Linear(c.vision_dim, d)})
        lengths = {"text": c.text_len, "audio": c.audio_len, "vision": c.vision_len}
        self.embed = nn.ModuleDict({m: TokenEmbedding(lengths[m], T, d, c.embed_depth, c.heads, c.dim_head,
                                                      c.mlp_dim, c.dropout, c.emb_dropout) for m in lengths})
        self.language_encoder = LanguageEncoder(T, d, c.ahl_depth - 1, c.heads, c.dim_head, c.mlp_dim, c.dropout,
                                                c.emb_dropout)
        self.ahl = nn.ModuleList([AHLLayer(d, c.ahl_heads, c.ahl_dim_head, c.dropout) for _ in range(c.ahl_depth)])
        self.fusion = FusionTransformer(T, T, d, c.fusion_depth, c.fusion_heads, c.fusion_dim_head, c.mlp_dim,
                                        c.dropout, c.emb_dropout)
        self.head = nn.Linear(d, 1)
        self.set_objective(RegressionObjective(c.loss))

    def forward(self, batch) -> ModelOutput:
        text = text_features(self.text_encoder, batch)
        x = {"text": text, "audio": batch.audio, "vision": batch.vision}
        h = {m: self.embed[m](self.input_proj[m](x[m]), batch.features(m)[1]) for m in x}
        scales = self.language_encoder(h["text"])
        hyper = self.hyper.unsqueeze(0).expand(text.shape[0], -1, -1)
        for layer, h_t in zip(self.ahl, scales):
            hyper = layer(h_t, h["audio"], h["vision"], hyper)
        fused = self.fusion(hyper, scales[-1])
        aux = {"hyper": hyper, "fused": fused, **{f"tokens_{m}": h[m] for m in h}}
        return ModelOutput(self.head(fused).squeeze(-1), aux)
