"""MCTN: Multimodal Cyclic Translation Network (Pham et al., AAAI 2019, "Found in Translation: Learning Robust
Joint Representations by Cyclic Translations Between Modalities").

A sequence-to-sequence model translates the source modality (text) into a target modality (vision) and the
translation back into the source (the cyclic translation); its encoder's states are the joint representation.
The hierarchical form for three modalities translates that joint representation into the third modality
(audio) with a second seq2seq model, whose encoder's states feed the sentiment regressor (an LSTM with
attention pooling). At test time only the text is needed: the prediction reads the two encoders alone.

Checked against MMSA's ``models/singleTask/MCTN.py`` (thuiar/MMSA @ a94e65d) by
``benchmarks/parity/parity_mmsa_mctn.py``; preset ``mosi`` from MMSA's ``config/config_regression.json``
("mctn", the only dataset it configures).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .._fields import doc
from ..layers import AdditiveAttention, build_text_encoder, text_features
from ..layers.losses import masked_mse, regression_loss
from ..space import Choice, Float
from ._registry import register_model
from .base import LossOutput, ModelConfig, ModelOutput, MSAModel, Objective
from .presets import MOSI_INPUTS

__all__ = ["MCTNConfig", "MCTN", "MCTNObjective"]


@dataclass(frozen=True)
class MCTNConfig(ModelConfig):
    """Hierarchical MCTN, text -> vision (cyclic) then joint -> audio (base ``dropout`` unused: MMSA's is 0)."""

    hidden: int = doc(32, "hidden size of every encoder, decoder and the regression LSTM (MMSA hid_dim)")
    feature_dim: int = doc(0, "common feature width the modalities are zero-padded to, so that one seq2seq "
                              "translates text -> vision and back (MMSA output_dim); 0 = the largest input dim")
    translation_weight: float = doc(0.1, "weight of the text -> vision translation MSE")
    cycle_weight: float = doc(0.1, "weight of the vision -> text back-translation (cycle) MSE")
    audio_weight: float = doc(0.1, "weight of the joint -> audio translation MSE")
    dropout: float = doc(0.0, "unused: MMSA builds MCTN without dropout")
    loss: str = doc("l1", "prediction criterion: l1 (MMSA) | mse")
    lr: float = doc(1e-4, "learning rate (MMSA mosi init_lr)")
    batch_size: int = doc(32, "training batch size")
    grad_clip_norm: float = doc(1.0, "clip the global gradient norm (MMSA grad_clip)")


def _start_mask(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` with step 0 valid for a sample that has no valid step (it is then encoded as one zero step)."""
    out = mask.clone()
    out[:, 0] |= ~mask.any(dim=1)
    return out


class _Encoder(nn.Module):
    """Bidirectional LSTM over the valid steps: (states summed over the two directions [B, L, H] (zero on padded
    steps), s = tanh(W (h_forward + h_backward)) [B, H], W without bias)."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.rnn = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(hidden, hidden, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lengths = mask.sum(dim=1).cpu()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h, _) = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        H = self.fc.in_features
        return out[..., :H] + out[..., H:], torch.tanh(self.fc(h[-1] + h[-2]))


class _Decoder(nn.Module):
    """Attention decoder with teacher forcing: step t reads the target's step t-1 and the attention context
    over the encoder states, through a one-step bidirectional LSTM started from zeros; its summed output and
    the context give the frame of step t (Linear); its summed final state is the next step's attention query.
    Step 0 is not predicted (zeros), as in MMSA. ``forward(s, states, mask, target [B, Lt, F]) -> [B, Lt, F]``."""

    def __init__(self, out_dim: int, hidden: int):
        super().__init__()
        self.attention = AdditiveAttention(hidden, hidden, hidden)
        self.rnn = nn.LSTM(out_dim + hidden, hidden, batch_first=True, bidirectional=True)
        self.fc_out = nn.Linear(2 * hidden, out_dim)

    def forward(self, s: torch.Tensor, states: torch.Tensor, mask: torch.Tensor, target: torch.Tensor
                ) -> torch.Tensor:
        H = self.fc_out.in_features // 2
        frames = [torch.zeros_like(target[:, 0])]
        for t in range(1, target.shape[1]):
            context = torch.bmm(self.attention(s, states, mask).unsqueeze(1), states).squeeze(1)
            out, (h, _) = self.rnn(torch.cat([target[:, t - 1], context], dim=-1).unsqueeze(1))
            out = out[:, 0, :H] + out[:, 0, H:]
            frames.append(self.fc_out(torch.cat([out, context], dim=-1)))
            s = h[-1] + h[-2]
        return torch.stack(frames, dim=1)


class _Regression(nn.Module):
    """LSTM over the joint representation, attention pooling softmax_t(tanh(w . a_t + b)) over the valid steps,
    Linear to the score: [B, L, H], mask -> [B]."""

    def __init__(self, hidden: int):
        super().__init__()
        self.rnn = nn.LSTM(hidden, hidden, batch_first=True)
        self.score = nn.Linear(hidden, 1)
        self.out = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        acts, _ = self.rnn(x)
        scores = torch.tanh(self.score(acts)).squeeze(-1).masked_fill(~mask, float("-inf"))
        pooled = (acts * torch.softmax(scores, dim=1).unsqueeze(-1)).sum(dim=1)
        return self.out(pooled).squeeze(-1)


#: `msa tune`'s default ranges: MMSA's tuning config has no MCTN entry, so these are a narrow range around its
#: MOSI values (config_regression.json "mctn": hid_dim 32, init_lr 1e-4, batch_size 32), not MMSA's
MCTN_SPACE = {"hidden": Choice(16, 32, 64), "lr": Float(5e-5, 5e-4, log=True), "batch_size": Choice(16, 32, 64)}


@register_model("mctn", MCTNConfig, search_space=MCTN_SPACE, presets={
    # MMSA config_regression.json "mctn".datasetParams.mosi (hid_dim 32, output_dim 768 = the widest input,
    # max_seq_len 50 on MMSA's word-aligned MOSI: 50 steps per modality)
    "mosi": {**MOSI_INPUTS, "audio_len": 50, "vision_len": 50, "hidden": 32, "feature_dim": 768, "lr": 1e-4,
             "batch_size": 32, "grad_clip_norm": 1.0},
    "tiny": {"hidden": 6},
}, summary="Multimodal Cyclic Translation Network (Pham et al., 2019)")
class MCTN(MSAModel):
    """Hierarchical MCTN. Every modality is zero-padded to ``feature_dim`` features F.

    seq2seq1 (encoder1: F -> H, decoder1: -> F) translates text -> vision (aux ``translation_vision``
    [B, Lv, F]) and that translation back -> text (``cycle_text`` [B, Lt, F]); seq2seq2 (encoder2: H -> H,
    decoder2: -> F) translates encoder1's text states -> audio (``translation_audio`` [B, La, F]); the regressor
    reads encoder2's states of the text -> prediction [B].

    Deviations from MMSA: the recurrences run over time (MMSA's LSTMs are not batch_first and receive
    batch-first tensors, so they run across the batch; the parity script feeds MMSA time-major tensors, the
    layout its seq2seq modules are written for); padded steps are masked (packed encoders, attention and
    pooling over valid steps, translation errors over the target's valid steps); no truncation to 50 steps.
    Kept from MMSA: each decoder step's LSTM starts from a zero state (the previous state only steers the
    attention), so the decoders' recurrent weights ``weight_hh`` never receive a gradient (``grad_exempt``); they
    are built so that the parameter count and layout stay MMSA's.
    """

    #: the prediction reads the text alone (the paper's test-time setting): no fusion gain on audio/vision-only
    #: information is expected (tests/models/test_fit_synthetic.py leaves it out; test_mctn.py checks it)
    text_only_inference = True
    #: the decoders' recurrent weights: every decoder step starts its LSTM from zeros (see above)
    grad_exempt = ("decoder1.rnn.weight_hh_l0", "decoder2.rnn.weight_hh_l0")

    def __init__(self, config: MCTNConfig):
        super().__init__(config)
        c = config
        self.text_encoder, dt = build_text_encoder(c.text_encoder, c.text_dim)
        F_ = c.feature_dim or max(dt, c.audio_dim, c.vision_dim)
        if F_ < max(dt, c.audio_dim, c.vision_dim):
            raise ValueError(f"feature_dim {F_} is smaller than an input dim ({dt}, {c.audio_dim}, {c.vision_dim})")
        self.width = F_
        self.encoder1, self.decoder1 = _Encoder(F_, c.hidden), _Decoder(F_, c.hidden)
        self.encoder2, self.decoder2 = _Encoder(c.hidden, c.hidden), _Decoder(F_, c.hidden)
        self.regression = _Regression(c.hidden)
        self.set_objective(MCTNObjective(c))

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (0, self.width - x.shape[-1]))

    def _joint(self, batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(text, its mask, encoder1's states, s1)."""
        text, mask = self._pad(text_features(self.text_encoder, batch)), _start_mask(batch.text_mask)
        return (text, mask, *self.encoder1(text, mask))

    def forward(self, batch) -> ModelOutput:
        text, tmask, join, s1 = self._joint(batch)
        vision, vmask = self._pad(batch.vision), _start_mask(batch.vision_mask)
        audio = self._pad(batch.audio)
        video_1 = self.decoder1(s1, join, tmask, vision)
        back_states, back_s = self.encoder1(video_1, vmask)
        text_1 = self.decoder1(back_s, back_states, vmask, text)
        join2, s2 = self.encoder2(join, tmask)
        audio_1 = self.decoder2(s2, join2, tmask, audio)
        aux = {"translation_vision": video_1, "cycle_text": text_1, "translation_audio": audio_1,
               "target_vision": vision, "target_text": text, "target_audio": audio, "joint": join2}
        return ModelOutput(self.regression(join2, tmask), aux)

    def predict(self, batch) -> torch.Tensor:
        """The prediction alone: text -> encoder1 -> encoder2 -> regressor (the decoders only feed the objective)."""
        _, tmask, join, _ = self._joint(batch)
        return self.regression(self.encoder2(join, tmask)[0], tmask)


class MCTNObjective(Objective):
    """``prediction`` (L1) + ``translation_vision`` + ``cycle_text`` + ``translation_audio``: each weighted MSE
    between the translated sequence and its target (the zero-padded features), averaged over the target's
    valid steps (MMSA: 0.1 x each MSE + 1.0 x L1)."""

    def __init__(self, config: MCTNConfig):
        super().__init__()
        self.config = config

    def forward(self, output: ModelOutput, batch) -> LossOutput:
        c, aux = self.config, output.aux
        comps = {"prediction": regression_loss(output.prediction, batch.label, c.loss)}
        for name, target, mask, w in (("translation_vision", "vision", batch.vision_mask, c.translation_weight),
                                      ("cycle_text", "text", batch.text_mask, c.cycle_weight),
                                      ("translation_audio", "audio", batch.audio_mask, c.audio_weight)):
            comps[name] = w * masked_mse(aux[name], aux[f"target_{target}"], mask)
        return LossOutput(sum(comps.values()), comps)
