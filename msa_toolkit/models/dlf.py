"""DLF: Disentangled-Language-Focused multimodal sentiment analysis (Wang et al., AAAI 2025, arXiv 2412.12225).

Pipeline (all sequences batch-first, ``d = config.dim``)::

    x_m [B, L_m, D_m] --Conv1d(k)--> p_m [B, L_m, d]                                 (feature extraction)
    p_m --shared encoder E_c--> c_m,   p_m --specific encoder E_m--> s_m           (disentanglement)
    r_m = Dec_m([s_m; c_m]),  s'_m = E_m(r_m)                                    (geometric regularisers)
    shared:   SA_m(c_m) -> last state -> [B, 3d] -> residual MLP -> y_shared
    LFA:      L->L  = Mem_L(s_l)                                                  (Language-Focused Attractor)
              A->L  = Mem_A(Cross(s_l <- s_a)),   V->L = Mem_V(Cross(s_l <- s_v))
              each -> last state -> residual MLP -> y_text, y_audio, y_vision     (specific predictions)
    fusion:   [sig(W_l h_l); sig(W_v h_v); sig(W_a h_a); sig(W_c h_c)] [B, 6d] -> residual MLP -> y

Every encoder/attention block is the MulT transformer
(:class:`~msa_toolkit.models.layers.CrossModalTransformer`).

Loss (:class:`DLFObjective`; weights in :class:`DLFConfig`, MOSI reference defaults)::

    L1(y) + L1(y_shared) + 3 L1(y_text) + L1(y_vision) + L1(y_audio)
      + 0.1 (specific + reconstruction + 0.1 (triplet + orthogonality))

- reconstruction: sum over modalities of the MSE between ``r_m`` and ``p_m``;
- specific: sum over modalities of the MSE between ``s'_m`` and ``s_m``;
- orthogonality: sum over modalities of ``max(0, cos(s_m[t], c_m[t]))`` averaged over valid steps;
- triplet: :func:`~msa_toolkit.models.losses.modified_triplet_loss` over the 3B shared
  embeddings (one per sample and modality, label = the sample's label, margin 0.15 * |label gap|).

Deviations from the paper / the authors' reference behaviour (documented per the project rules):

1. Conv projections have no padding, as in the reference (the length shrinks by k - 1); a
   sample of n valid steps keeps max(n - k + 1, 1) windows (a sample shorter than the kernel
   keeps one zero-extended window), so any length, including 1, works and padding does not
   change the result.
2. The reference flattens fixed-length sequences into Linear layers for the triplet embeddings;
   here each modality's shared sequence is mean-pooled over valid steps then projected
   (``Linear(d, d)``), so the model is independent of sequence lengths.
3. The orthogonality term is the cosine hinge per time step between ``s_m`` and ``c_m``
   (the reference applies PyTorch's cosine-embedding loss, target -1, to rows of a reshaped
   tensor whose width is a dataset-dependent constant).
4. Attention uses key padding masks and bidirectional attention, and pools the state at the
   last *valid* step (the reference attends over padding with MulT's causal mask and takes
   the last padded step). Reconstruction / specific MSEs average over valid steps only.
5. Branches the reference builds but never uses in the loss or prediction (per-modality
   "low" shared heads and the A/V-target cross-modal transformers) are omitted.
6. The reference accumulates gradients over 10 mini-batches before each Adam step
   (``update_epochs = 10``: summed, the running sum value-clipped after every batch, a trailing partial
   accumulation dropped; the reference recipe sets the trainer's ``grad_accum``, ``grad_accum_sum``,
   ``clip_each_backward`` and ``drop_partial_accum`` so) and lists a weight decay its optimiser never
   receives; the presets keep batch 16 and no weight decay.
7. Frozen precomputed text features by default; set ``text_encoder`` to fine-tune BERT as the
   reference does (``use_finetune``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..spec import MODALITIES
from .._fields import doc
from ._registry import register_model
from .base import LossOutput, ModelConfig, ModelOutput, MSAModel, Objective
from ..layers import (ConvProjection, CrossModalTransformer, ResidualHead, build_text_encoder, dropout, masked_mean,
                      text_features, unpadded)
from ..layers.losses import cosine_orthogonality, masked_mse, modified_triplet_loss, regression_loss
from .presets import MOSEI_INPUTS, MOSI_INPUTS

__all__ = ["DLFConfig", "DLF", "DLFObjective"]


@dataclass(frozen=True)
class DLFConfig(ModelConfig):
    """DLF hyper-parameters; defaults = the authors' CMU-MOSI setting.

    The base field ``dropout`` is unused: DLF has the reference's separate dropouts below.
    """

    dim: int = doc(50, "common width d of every projected / encoded sequence")
    heads: int = doc(10, "attention heads of every transformer (dim must be divisible by it)")
    layers: int = doc(2, "depth of the encoders, shared self-attention and L->L / cross-modal blocks (nlevels)")
    mem_layers: int = doc(3, "depth of the A->L and V->L memory transformers (reference: max(layers, 3))")
    kernel_text: int = doc(5, "Conv1d kernel size of the text input projection")
    kernel_audio: int = doc(5, "Conv1d kernel size of the audio input projection")
    kernel_vision: int = doc(5, "Conv1d kernel size of the vision input projection")
    attn_dropout: float = doc(0.3, "attention dropout of the text and shared blocks and the memory transformers")
    attn_dropout_audio: float = doc(0.2, "attention dropout of the audio blocks (specific encoder, self-attention, "
                                         "A->L)")
    attn_dropout_vision: float = doc(0.0, "attention dropout of the vision blocks (specific encoder, "
                                          "self-attention, V->L)")
    dropout: float = doc(0.1, "unused: DLF has the reference's separate dropouts (attn_/ff_/res_/embed_/out_dropout)")
    ff_dropout: float = doc(0.0, "feed-forward activation dropout of the transformers (reference: relu_dropout)")
    res_dropout: float = doc(0.0, "residual dropout of the transformers")
    embed_dropout: float = doc(0.2, "dropout on the transformers' inputs after adding positions")
    out_dropout: float = doc(0.5, "dropout inside the residual prediction heads")
    text_dropout: float = doc(0.5, "dropout on the input text features")
    w_final: float = doc(1.0, "weight of the L1 loss of the final (fused) prediction")
    w_shared: float = doc(1.0, "weight of the L1 loss of the shared-representation prediction")
    w_text: float = doc(3.0, "weight of the L1 loss of the language-specific prediction")
    w_vision: float = doc(1.0, "weight of the L1 loss of the vision-specific (V->L) prediction")
    w_audio: float = doc(1.0, "weight of the L1 loss of the audio-specific (A->L) prediction")
    # regulariser weights below: the reference's 0.1 * (specific + recon + 0.1 * (triplet + ort))
    w_specific: float = doc(0.1, "weight of the specific-consistency MSE (re-encoded reconstruction vs specific)")
    w_reconstruction: float = doc(0.1, "weight of the reconstruction MSE of the projected inputs")
    w_triplet: float = doc(0.01, "weight of the triplet loss on the shared embeddings")
    w_orthogonality: float = doc(0.01, "weight of the shared/specific orthogonality (cosine hinge) loss")
    triplet_margin: float = doc(0.15, "triplet margin per unit of label difference")
    optimizer: str = doc("adam", "optimiser (reference: adam)")
    lr: float = doc(1e-4, "learning rate (reference: 1e-4)")
    weight_decay: float = doc(0.0, "weight decay (0: the reference lists one that its optimiser never receives)")
    batch_size: int = doc(16, "training batch size (reference: 16, with 10 batches per step: trainer grad_accum=10)")
    scheduler: str = doc("plateau", "learning-rate schedule (reference: reduce on plateau)")
    grad_clip_value: float = doc(0.6, "clip each gradient value to [-v, v] (reference: 0.6)")
    positions: str = doc("fairseq", "position table of the encoders (layers.sinusoidal_table): fairseq = the "
                                    "reference code's; interleaved = the table of checkpoints without this field")
    shared_kv_norm: bool = doc(True, "one LayerNorm for query and key/value in cross-modal blocks (reference); "
                                     "False = separate norms (checkpoints without this field)")

    #: values of fields added after early checkpoints: a stored config without them was trained with these
    LEGACY_VALUES: ClassVar[dict] = {"positions": "interleaved", "shared_kv_norm": False}


#: the authors' published settings
DLF_PRESETS = {
    "mosi": dict(MOSI_INPUTS),
    "mosei": {**MOSEI_INPUTS, "kernel_text": 3, "kernel_audio": 3, "kernel_vision": 3, "attn_dropout": 0.5,
              "attn_dropout_audio": 0.0, "attn_dropout_vision": 0.0, "embed_dropout": 0.0, "text_dropout": 0.1},
    # for tests and quick experiments
    "tiny": {"dim": 8, "heads": 2, "layers": 1, "mem_layers": 1, "kernel_text": 3, "kernel_audio": 3,
             "kernel_vision": 3, "text_dropout": 0.1, "out_dropout": 0.1},
}


@register_model("dlf", DLFConfig, presets=DLF_PRESETS,
                summary="DLF: Disentangled-Language-Focused MSA (Wang et al., AAAI 2025)")
class DLF(MSAModel):
    """DLF model. ``forward(batch) -> ModelOutput``.

    ``prediction`` [B] is the final (fused) prediction; ``aux`` holds the hierarchical
    predictions ``pred_shared``, ``pred_text``, ``pred_audio``, ``pred_vision`` [B] and the
    tensors of the regularisers: ``proj_<m>``, ``shared_<m>``, ``specific_<m>``,
    ``recon_<m>``, ``specific_recon_<m>`` [B, L_m, d], ``shared_embed_<m>`` [B, d] and ``mask_<m>``
    [B, L_m] (the masks of the projected sequences, L_m = input length - kernel + 1).
    See the module docstring for the architecture and deviations.
    """

    def __init__(self, config: DLFConfig):
        super().__init__(config)
        c = config
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        in_dims = {"text": dt, "audio": c.audio_dim, "vision": c.vision_dim}
        kernels = {"text": c.kernel_text, "audio": c.kernel_audio, "vision": c.kernel_vision}
        attn = {"text": c.attn_dropout, "audio": c.attn_dropout_audio, "vision": c.attn_dropout_vision}
        d = c.dim

        def tf(layers: int, attn_dropout: float, cross: bool = False) -> CrossModalTransformer:
            return CrossModalTransformer(d, c.heads, layers, cross=cross, dropout=c.res_dropout,
                                         attn_dropout=attn_dropout, ff_dropout=c.ff_dropout,
                                         embed_dropout=c.embed_dropout, positions=c.positions,
                                         shared_kv_norm=c.shared_kv_norm)

        self.proj = nn.ModuleDict({m: ConvProjection(in_dims[m], d, kernels[m], padding="valid")
                                   for m in MODALITIES})
        # disentanglement: one shared encoder, one specific encoder per modality, decoders
        self.shared_encoder = tf(c.layers, c.attn_dropout)
        self.specific_encoders = nn.ModuleDict({m: tf(c.layers, attn[m]) for m in MODALITIES})
        self.decoders = nn.ModuleDict({m: nn.Linear(2 * d, d, bias=False) for m in MODALITIES})
        self.triplet_proj = nn.ModuleDict({m: nn.Linear(d, d) for m in MODALITIES})
        # shared branch
        self.shared_self_attn = nn.ModuleDict({m: tf(c.layers, attn[m]) for m in MODALITIES})
        self.shared_head = ResidualHead(3 * d, 1, c.out_dropout)
        # Language-Focused Attractor: L->L self, A->L and V->L cross, each followed by a memory transformer
        self.lfa_text_mem = tf(c.layers, c.attn_dropout)
        self.lfa_cross = nn.ModuleDict({m: tf(c.layers, attn[m], cross=True) for m in ("audio", "vision")})
        self.lfa_mem = nn.ModuleDict({m: tf(c.mem_layers, c.attn_dropout) for m in ("audio", "vision")})
        self.specific_heads = nn.ModuleDict({m: ResidualHead(d, 1, c.out_dropout) for m in MODALITIES})
        # fusion
        self.gates = nn.ModuleDict({m: nn.Linear(d, d) for m in MODALITIES})
        self.shared_gate = nn.Linear(3 * d, 3 * d)
        self.fusion_head = ResidualHead(6 * d, 1, c.out_dropout)
        self.set_objective(DLFObjective(c))

    def forward(self, batch) -> ModelOutput:
        return self._run(batch, objective=True)

    def predict(self, batch) -> torch.Tensor:
        """The fused prediction [B] without the objective's tensors: the reconstructions, their re-encoding by
        the specific encoders and the triplet embeddings are not computed (a sixth of the transformer blocks of
        a forward). Same values as ``forward(batch).prediction``."""
        return self._run(batch, objective=False).prediction

    def _run(self, batch, objective: bool) -> ModelOutput:
        """The forward; ``objective=False`` skips what only :class:`DLFObjective` reads (see :meth:`predict`)."""
        c = self.config
        text = text_features(self.text_encoder, batch)
        x = {"text": dropout(text, c.text_dropout, self.training), "audio": batch.audio, "vision": batch.vision}
        aux: dict[str, torch.Tensor] = {}
        mask, proj = {}, {}
        for m in MODALITIES:
            # the network gets None for a mask without padding (CPU; layers.unpadded): no masking work
            # then, same results; the objective gets the mask itself in aux
            in_mask = batch.features(m)[1]
            net_mask = unpadded(in_mask)
            proj[m] = self.proj[m](x[m], net_mask)
            aux[f"mask_{m}"] = self.proj[m].output_mask(in_mask, proj[m].shape[1])
            mask[m] = None if net_mask is None else aux[f"mask_{m}"]
        sh = self._shared(proj, mask)
        pred_c, h_c, lfa = self._encoders(proj, sh, mask, aux, objective)
        gated = []
        for m in MODALITIES:
            pred_m, rep_m = self.specific_heads[m](lfa[m])
            aux[f"pred_{m}"] = pred_m.squeeze(-1)
            gated.append(torch.sigmoid(self.gates[m](rep_m)))
        gated.append(torch.sigmoid(self.shared_gate(h_c)))
        pred, _ = self.fusion_head(torch.cat(gated, dim=-1))
        aux["pred_shared"] = pred_c.squeeze(-1)
        return ModelOutput(pred.squeeze(-1), aux)

    def _encoders(self, proj: dict[str, torch.Tensor], sh: dict[str, torch.Tensor],
                  mask: dict[str, torch.Tensor | None], aux: dict[str, torch.Tensor], objective: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The specific encoders (on the projections, then on the reconstructions), the shared branch
        (self-attention, last states, head) and the Language-Focused Attractor (L->L memory; A->L and V->L
        cross-modal transformers, then their memories), module by module. Returns the shared prediction
        [B, 1], the shared state ``h_c`` [B, 3d] and the LFA states at the last valid text step by modality
        [B, d]; fills ``aux`` (the objective's tensors only when ``objective``). The transformers whose last
        state alone is used compute their final block for that step only (``CrossModalTransformer.forward_last``:
        exact, fewer and smaller operations)."""
        s = {}
        for m in MODALITIES:
            p = proj[m]
            s[m] = self.specific_encoders[m](p, mask[m])
            if not objective:  # the rest of this loop feeds only the objective (see predict)
                continue
            recon = self.decoders[m](torch.cat([s[m], sh[m]], dim=-1))
            aux.update({f"proj_{m}": p, f"specific_{m}": s[m], f"shared_{m}": sh[m], f"recon_{m}": recon,
                        f"specific_recon_{m}": self.specific_encoders[m](recon, mask[m]),
                        f"shared_embed_{m}": self.triplet_proj[m](masked_mean(sh[m], mask[m]))})
        # shared branch
        h_c = torch.cat([self.shared_self_attn[m].forward_last(sh[m], mask[m]) for m in MODALITIES], -1)
        pred_c, _ = self.shared_head(h_c)
        # Language-Focused Attractor in the specific space (language-length sequences)
        tm = mask["text"]
        lfa = {"text": self.lfa_text_mem.forward_last(s["text"], tm)}
        for m in ("audio", "vision"):
            lfa[m] = self.lfa_mem[m].forward_last(self.lfa_cross[m](s["text"], tm, s[m], mask[m]), tm)
        return pred_c, h_c, lfa

    def _shared(self, proj: dict[str, torch.Tensor], mask: dict[str, torch.Tensor | None]
                ) -> dict[str, torch.Tensor]:
        """The shared encoder on every modality. Sequences of one length (aligned inputs) run as one call
        on the modalities stacked along the batch: per sample the same function (LayerNorms, attention
        and the feed-forward act on each sample alone), in a third of the calls with 3x larger GEMMs
        (the dropout draws follow another order: the same distribution)."""
        seqs = [proj[m] for m in MODALITIES]
        if len({x.shape[1] for x in seqs}) > 1:
            return {m: self.shared_encoder(proj[m], mask[m]) for m in MODALITIES}
        masks = [mask[m] for m in MODALITIES]
        if all(k is None for k in masks):
            stacked_mask = None
        else:
            stacked_mask = torch.cat([torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if k is None
                                      else k for x, k in zip(seqs, masks)])
        out = self.shared_encoder(torch.cat(seqs), stacked_mask).split([x.shape[0] for x in seqs])
        return dict(zip(MODALITIES, out))


class DLFObjective(Objective):
    """Weighted L1 hierarchical prediction losses + the four geometric regularisers.

    Components (each already weighted): ``final_l1``, ``shared_l1``, ``text_l1``,
    ``vision_l1``, ``audio_l1``, ``specific``, ``reconstruction``, ``triplet``,
    ``orthogonality``.
    """

    def __init__(self, config: DLFConfig):
        super().__init__()
        self.w = {"final_l1": config.w_final, "shared_l1": config.w_shared, "text_l1": config.w_text,
                  "vision_l1": config.w_vision, "audio_l1": config.w_audio, "specific": config.w_specific,
                  "reconstruction": config.w_reconstruction, "triplet": config.w_triplet,
                  "orthogonality": config.w_orthogonality}
        self.margin = config.triplet_margin

    def forward(self, output: ModelOutput, batch) -> LossOutput:
        a, y = output.aux, batch.label
        raw = {"final_l1": regression_loss(output.prediction, y, "l1"),
               "shared_l1": regression_loss(a["pred_shared"], y, "l1")}
        for m in MODALITIES:
            raw[f"{m}_l1"] = regression_loss(a[f"pred_{m}"], y, "l1")
        # the masks of the projected (shorter) sequences; None without padding (the same means, less work)
        masks = {m: unpadded(a[f"mask_{m}"]) for m in MODALITIES}
        raw["specific"] = sum(masked_mse(a[f"specific_recon_{m}"], a[f"specific_{m}"], masks[m]) for m in MODALITIES)
        raw["reconstruction"] = sum(masked_mse(a[f"recon_{m}"], a[f"proj_{m}"], masks[m]) for m in MODALITIES)
        raw["orthogonality"] = sum(
            cosine_orthogonality(a[f"specific_{m}"].flatten(0, 1), a[f"shared_{m}"].flatten(0, 1),
                                 None if masks[m] is None else masks[m].flatten()) for m in MODALITIES)
        feats = torch.stack([a[f"shared_embed_{m}"] for m in MODALITIES], dim=1).flatten(0, 1)   # [3B, d]
        labels = y.repeat_interleave(len(MODALITIES))
        valid = torch.stack([batch.present(m) for m in MODALITIES], dim=1).flatten()
        raw["triplet"] = modified_triplet_loss(feats, labels, self.margin, valid)
        comps = {k: self.w[k] * v for k, v in raw.items()}
        return LossOutput(sum(comps.values()), comps)
