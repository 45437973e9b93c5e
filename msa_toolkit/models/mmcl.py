"""MMCL: Multi-Modality Collaborative Learning (Wang, Liu & Liu, arXiv 2501.12424).

Pipeline (B batch, S = min(``config.seq_len``, longest input length) grid steps, d = ``config.d_model``)::

    text [B, Lt, Dt], audio [B, La, Da], vision [B, Lv, Dv] (+ bool masks)
      └─ resample each modality's valid steps onto S slots, Linear -> X_m [B, S, d]   (shared subspace)
      └─ decoupling (parameter-free), per modality m with the other two o1, o2:
           S_m = softmax_row(min(cos(X_m, X_o1), cos(X_m, X_o2)))            [B, S, S]
           common_m   = S_m · X_m                                            [B, S, d]
           specific_m = softmax_row(1 - S_m) · X_m                            [B, S, d]
      └─ common: intra-modal transformer layer (self-attention + FFN + residuals; or the authors'
           attention-only block, common_block="attention") -> mean -> c_m [B, d]
      └─ specific: state s = [specific_t; specific_a; specific_v] (detached)  [B, 3S, d]
           policy π_m: sigmoid(Linear(d, 1)) per step -> action a              [B, 3S, 1] in (0, 1)
           weighted specific = specific ⊙ a -> per-modality transformer layer -> mean -> p_m [B, d]
      └─ e_m = [c_m; p_m] [B, 2d], gated by sigmoid(MLP(e_m)), averaged over present modalities
      └─ head: Linear(2d, d) - ReLU - LayerNorm - Dropout - Linear(d, 1) -> prediction [B]

Objective (all inside :class:`MMCLObjective`, one optimiser, named weighted components):

* ``prediction`` = 7 · L1(ŷ, y).
* ``critic`` = 13 · L1(Q(s, a), r + 0.5 · Q_target(s', π_target(s'))) on transitions drawn from a
  replay buffer of 1000 (the authors' policy: halved when full, sampled without replacement);
  Q_target / π_target are soft-updated copies (τ = 0.01) refreshed in ``after_step``. Inputs are detached replay tensors and the target is computed without
  gradients, so this term trains the critic only.
* ``policy`` = −13 · mean Q(s, π(s)) on the same replay states, with the critic's weights
  detached (``torch.func.functional_call`` on detached parameters): the gradient reaches the
  policy through the action only, never the critic.

How the auxiliary learners fit the one-optimiser trainer contract: the critic is a submodule of
the objective (so the trainer's single optimiser trains it); the target critic and target policy
are buffer copies (:class:`~._mmcl_parts.TargetCopy`, saved in checkpoints, never optimised)
evaluated with ``torch.func.functional_call`` and soft-updated in ``after_step``; the replay
buffer stores detached tensors (one transition per sample) as plain attributes, outside
checkpoints and outside DDP's buffer broadcast (memory: capacity x 3·seq_len x d floats, about
150 MB for the published presets, allocated on the first training step). Every loss is
computed in the same forward/backward as the prediction loss.

The critic is a centralised one: per modality a transformer layer over state ⊕ action (the
action repeated ``num_heads`` times so the width stays divisible by the heads), mean-pooled,
concatenated over the three modalities, then an MLP to a scalar.

Deviations from the paper / the authors' public (IEMOCAP classification) code, all deliberate:

* **Regression reward.** The reference reward is the predicted probability of the true class.
  For regression labels in [-3, 3] we use ``r = exp(-|ŷ - y|)`` (``reward="exp"``, in (0, 1],
  1 for a perfect prediction, 0.37 for an error of 1) or ``1 - |ŷ - y| / 6`` (``"linear"``).
* **Common time grid.** The decoupling needs square similarity matrices (``S_m · X_m`` mixes
  m's own steps with weights computed against the other modalities' steps at the same index),
  which the reference gets from word-aligned inputs of one length. We resample every
  modality's valid steps onto ``seq_len`` slots by adaptive average pooling (the identity for
  aligned inputs of that length), which also aligns unaligned sequences roughly in time. The grid
  never has more slots than the data's longest input (``text_len``/``audio_len``/``vision_len``)
  has steps: more slots would only repeat or average neighbouring steps. For one-step
  (utterance-level) features this is the same function as a 50-slot grid (no positions anywhere,
  so 50 identical slots attend and pool exactly as one does) at about 1/38 of the training time
  (``benchmarks/mmcl_grid.py``).
* **Absent modalities.** The min over the other modalities runs over *present* ones only (all
  similarities 0 when neither is present); an absent modality contributes zeros and is left out
  of the modality average (the reference always divides by 3).
* **Transitions.** The reference chains consecutive mini-batches (next state = next batch's
  specific features ⊙ current action), which ties the MDP to data order and equal batch sizes.
  Here one batch is one step: s = the batch's specific features, a = π(s), s' = s ⊙ a (the
  reference's "update state" applied to the same observation), r from the prediction error.
  s' is recomputed from the stored (s, a) instead of being stored, halving buffer memory.
* **Replay start.** Transitions of the current batch are added before sampling, so the critic
  and policy losses are active from the first step (the reference waits until the buffer holds
  more than one batch). In eval mode nothing is stored and the current batch is used as is.
* **Target initialisation.** Targets start as exact copies of the online networks (standard
  DDPG practice); the reference initialises them independently.
* **Normalisation.** BatchNorm in the reference heads is replaced by LayerNorm so batches of one
  sample train, and the heads' dropout moves from before the ReLU to after the LayerNorm
  (reference: Linear-Dropout-ReLU-BatchNorm-Linear; here Linear-ReLU-LayerNorm-Dropout-Linear).
  Dropout in front of a per-sample normalisation changes what the normalisation sees between
  training and evaluation: measured on CMU-MOSI text, the eval-mode predictions of the old
  order had 1.5x the spread of the training-mode ones (std 1.63 against 1.06 on the train split),
  which inflated the MAE and made it jump between epochs.
* **Common block.** By default the common-feature block is a full transformer layer (self-attention
  + FFN + residuals, as the paper describes); ``common_block="attention"`` (the reference recipe's)
  is the authors' code's attention-only block (:class:`~._mmcl_parts.AttentionOnlyBlock`), which
  the parity script compares with the reference directly.
* **Single optimiser.** The reference uses three Adam optimisers (model, actor, critic) with
  the same learning rate; here one optimiser covers all of them as three parameter groups
  (:meth:`MMCL.param_groups`, each with its own plateau patience when set) and isolation is done with
  detach / functional calls as above; the reference's sequential actor / critic / actor steps within
  a batch are one step here. The policy also receives the prediction loss gradient
  through the weighting (as in the reference, where the actor is stepped after the
  classification loss).

Hyper-parameters: d = 256 (paper); heads 4, attention dropout 0, dropout 0.5, lr 3e-4,
batch 128, plateau scheduler and the loss weights 7 / 13 follow the authors' public code; the
feed-forward width 2048 is that code's (PyTorch default) transformer layer width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .._fields import doc
from ..data.batch import Batch
from ..spec import MODALITIES
from ._mmcl_parts import (AttentionOnlyBlock, ReplayBuffer, TargetCopy, frozen_params, modality_chunks,
                          resample_to_grid)
from ._registry import register_model
from .base import LossOutput, ModelConfig, ModelOutput, MSAModel, Objective
from ..layers import Dropout, EncoderLayer, masked_mean
from .presets import MOSEI_ALIGNED_INPUTS, MOSI_ALIGNED_INPUTS
from ..space import Choice, Float


@dataclass(frozen=True)
class MMCLConfig(ModelConfig):
    """MMCL configuration (defaults = the published setting where known)."""

    text_encoder: str | None = doc(None, "must stay None: MMCL consumes precomputed (frozen) text features")
    d_model: int = doc(256, "width d of the shared subspace every modality is projected into (paper: 256)")
    seq_len: int = doc(50, "length of the common time grid every modality is resampled onto before decoupling "
                           "(capped at the longest input: text_len, audio_len, vision_len)")
    num_heads: int = doc(4, "attention heads in every transformer layer (common block, temporal encoders, critic)")
    ff_dim: int = doc(2048, "hidden width of the transformer layers' feed-forward networks")
    common_block: str = doc("transformer", "the common features' block: transformer (the paper: self-attention + "
                                          "feed-forward, residuals, LayerNorm) | attention (the authors' code: "
                                          "self-attention, then LayerNorm(c + Linear(c)); the reference recipe's)")
    attn_dropout: float = doc(0.0, "dropout inside the transformer layers: attention weights, feed-forward, "
                                   "residual (reference: 0)")
    dropout: float = doc(0.5, "dropout of the prediction head and the critic head (reference: 0.5)")
    prediction_weight: float = doc(7.0, "weight of the L1 prediction loss (reference w1 = 7)")
    policy_weight: float = doc(13.0, "weight of the policy loss -Q(s, pi(s)) (reference w2 = 13)")
    critic_weight: float = doc(13.0, "weight of the critic's L1 temporal-difference loss (reference w2 = 13)")
    gamma: float = doc(0.5, "discount of the TD target r + gamma * Q_target(s', pi_target(s')) (reference: 0.5)")
    tau: float = doc(0.01, "soft target-update rate: target <- (1 - tau) target + tau online, after every "
                           "optimiser step")
    replay_capacity: int = doc(1000, "replay buffer capacity in transitions (one transition per sample)")
    replay_batch: int = doc(0, "transitions drawn per step for the critic/policy losses (0 = the current batch size)")
    reward: str = doc("exp", "reward from the regression error: exp -> exp(-|err|), linear -> 1 - |err| / 6")
    optimizer: str = doc("adam", "optimiser (authors' code: adam)")
    lr: float = doc(3e-4, "learning rate (authors' code: 3e-4)")
    batch_size: int = doc(128, "training batch size (authors' code: 128)")
    scheduler: str = doc("plateau", "learning-rate schedule (authors' code: reduce on plateau)")
    actor_plateau_patience: int = doc(0, "plateau patience of the actor's parameter group (policy, temporal "
                                         "encoders, gates, head); 0 = the trainer's plateau_patience "
                                         "(authors' code: 5)")
    critic_plateau_patience: int = doc(0, "plateau patience of the critic's parameter group; 0 = the trainer's "
                                          "plateau_patience (authors' code: 5)")


MMCL_PRESETS = {
    # CMU-MOSI with the BERT-aligned features the authors' code points to (MAG-BERT release):
    # BERT 768, COVAREP 74, FACET 47, 50 word-aligned steps
    "mosi": {**MOSI_ALIGNED_INPUTS, "seq_len": 50},
    # CMU-MOSEI, same feature release (FACET 35)
    "mosei": {**MOSEI_ALIGNED_INPUTS, "seq_len": 50},
    # small widths for tests and smoke runs (not a published setting)
    "tiny": dict(d_model=16, seq_len=6, num_heads=4, ff_dim=32, replay_capacity=64),
}


#: ``common_block`` values: the paper's full transformer layer, the authors' code's attention-only block
COMMON_BLOCKS = ("transformer", "attention")


def _common_block(c: MMCLConfig) -> nn.Module:
    """One modality's common-feature block (``config.common_block``)."""
    if c.common_block == "attention":
        return AttentionOnlyBlock(c.d_model, c.num_heads, c.attn_dropout)
    return EncoderLayer(c.d_model, c.num_heads, c.ff_dim, c.attn_dropout, c.attn_dropout)


def _validate(config: MMCLConfig) -> None:
    if config.d_model % config.num_heads:
        raise ValueError(f"d_model ({config.d_model}) must be divisible by num_heads ({config.num_heads})")
    if config.common_block not in COMMON_BLOCKS:
        raise ValueError(f"common_block must be one of {', '.join(COMMON_BLOCKS)}, got {config.common_block!r}")
    if config.reward not in ("exp", "linear"):
        raise ValueError(f"reward must be 'exp' or 'linear', got {config.reward!r}")
    if config.seq_len < 1:
        raise ValueError("seq_len must be >= 1")
    if config.text_encoder is not None:
        raise ValueError("MMCL consumes precomputed text features; text_encoder fine-tuning is not supported "
                         "(the authors' model uses frozen BERT features)")


class MMCLPolicy(nn.Module):
    """Per-modality policies: state [B, 3S, d] -> action [B, 3S, 1] = sigmoid(Linear_m(state_m))."""

    def __init__(self, d: int):
        super().__init__()
        self.heads = nn.ModuleDict({m: nn.Linear(d, 1) for m in MODALITIES})

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        parts = [torch.sigmoid(self.heads[m](s)) for m, s in zip(MODALITIES, modality_chunks(state))]
        return torch.cat(parts, dim=1)


class MMCLCritic(nn.Module):
    """Centralised critic Q(s, a): (state [B, 3S, d], action [B, 3S, 1], mask [B, 3S]) -> [B].

    Per modality a post-norm transformer layer over x = [s; a, ..., a] (the action repeated ``num_heads``
    times, so the width d + h divides into the heads), mean-pooled; the three pooled vectors go through an MLP.
    """

    def __init__(self, config: MMCLConfig):
        super().__init__()
        d, h = config.d_model, config.num_heads
        self.repeat = h
        self.encoders = nn.ModuleDict({m: EncoderLayer(d + h, h, config.ff_dim, config.attn_dropout,
                                                       config.attn_dropout) for m in MODALITIES})
        self.proj = nn.Sequential(nn.Linear(3 * (d + h), 2 * d), nn.Linear(2 * d, d), nn.ReLU(), nn.LayerNorm(d),
                                  Dropout(config.dropout), nn.Linear(d, 1))

    def forward(self, state: torch.Tensor, action: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        pooled = []
        for m, s, a, k in zip(MODALITIES, modality_chunks(state), modality_chunks(action), modality_chunks(mask)):
            x = torch.cat([s, a.expand(*a.shape[:-1], self.repeat)], dim=-1)
            pooled.append(masked_mean(self.encoders[m](x, k), k))
        return self.proj(torch.cat(pooled, dim=-1)).squeeze(-1)


#: `msa tune`'s default ranges around the authors' code (lr 3e-4, batch 128, dropout 0.5, gamma 0.5, tau 0.01)
MMCL_SPACE = {"lr": Float(1e-4, 1e-3, log=True), "batch_size": Choice(32, 64, 128), "dropout": Float(0.2, 0.6),
              "attn_dropout": Float(0.0, 0.3), "gamma": Float(0.3, 0.9), "tau": Float(0.005, 0.05, log=True)}


@register_model("mmcl", MMCLConfig, MMCL_PRESETS, search_space=MMCL_SPACE,
                summary="MMCL (arXiv 2501.12424): cosine common/specific decoupling, policy-weighted "
                        "specific features with a centralised critic")
class MMCL(MSAModel):
    """MMCL model; see the module docstring for the architecture, shapes and deviations.

    ``forward(batch)`` returns ``ModelOutput(prediction [B], aux)`` with aux:
    ``state`` [B, 3S, d] (detached specific features), ``action`` [B, 3S, 1] (policy weights in (0, 1)),
    ``state_mask`` bool [B, 3S], ``common`` / ``specific`` [B, 3S, d] (decoupled features).
    """

    def __init__(self, config: MMCLConfig):
        super().__init__(config)
        _validate(config)
        d, c = config.d_model, config
        dims = {"text": c.text_dim, "audio": c.audio_dim, "vision": c.vision_dim}
        self.proj = nn.ModuleDict({m: nn.Linear(dims[m], d) for m in MODALITIES})
        # intra-modal enhancement of the common features
        self.common_blocks = nn.ModuleDict({m: _common_block(c) for m in MODALITIES})
        self.policy = MMCLPolicy(d)
        # temporal encoders of the policy-weighted specific features
        self.specific_blocks = nn.ModuleDict({m: EncoderLayer(d, c.num_heads, c.ff_dim, c.attn_dropout, c.attn_dropout)
                                              for m in MODALITIES})
        self.gates = nn.ModuleDict({m: nn.Sequential(nn.Linear(2 * d, d), nn.Linear(d, 1)) for m in MODALITIES})
        # dropout after the LayerNorm, not before it: see "Normalisation" in the module docstring
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.ReLU(), nn.LayerNorm(d), Dropout(c.dropout),
                                  nn.Linear(d, 1))
        self.set_objective(MMCLObjective(config, self.policy))
        # the grid never has more slots than the longest input has steps (see "Common time grid")
        self.grid = min(c.seq_len, max(c.text_len, c.audio_len, c.vision_len))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """The authors' three optimisers as three groups (``name`` model / actor / critic) of the one optimiser:
        Adam is per parameter, so only their schedules differ; a group's ``plateau_patience`` (when set) is its
        own plateau schedule's (:class:`~msa_toolkit.training.optim.GroupPlateau`)."""
        actor_modules = (self.policy, self.specific_blocks, self.gates, self.head)
        actor = {id(p) for m in actor_modules for p in m.parameters()}
        critic = {id(p) for p in self.objective.critic.parameters()}
        groups: dict[str, list] = {"model": [], "actor": [], "critic": []}
        for p in self.parameters():
            if p.requires_grad:
                groups["actor" if id(p) in actor else "critic" if id(p) in critic else "model"].append(p)
        patience = {"actor": self.config.actor_plateau_patience, "critic": self.config.critic_plateau_patience}
        return [{"params": ps, "name": n, **({"plateau_patience": patience[n]} if patience.get(n) else {})}
                for n, ps in groups.items() if ps]

    # -- decoupling ------------------------------------------------------------------------------
    @staticmethod
    def decouple(x: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Parameter-free common/specific split. x[m]: [B, S, d]; present[m]: bool [B]."""
        xn = {m: F.normalize(x[m], p=2, dim=-1) for m in MODALITIES}
        common, specific = {}, {}
        for m in MODALITIES:
            sims = []
            for o in MODALITIES:
                if o == m:
                    continue
                cos = xn[m] @ xn[o].transpose(1, 2)  # [B, S, S]
                sims.append(torch.where(present[o][:, None, None], cos, torch.full_like(cos, math.inf)))
            smin = torch.minimum(*sims)
            smin = torch.where(torch.isinf(smin), torch.zeros_like(smin), smin)
            s = torch.softmax(smin, dim=-1)
            keep = present[m][:, None, None].to(x[m].dtype)
            common[m] = (s @ x[m]) * keep
            specific[m] = (torch.softmax(1.0 - s, dim=-1) @ x[m]) * keep
        return common, specific

    def forward(self, batch: Batch) -> ModelOutput:
        c = self.config
        x, present, slot_mask = {}, {}, {}
        for m in MODALITIES:
            v, mask = batch.features(m)
            grid, slots = resample_to_grid(v.float(), mask, self.grid)
            x[m] = self.proj[m](grid) * slots.unsqueeze(-1).to(grid.dtype)
            present[m], slot_mask[m] = slots[:, 0], slots
        common, specific = self.decouple(x, present)

        spec_all = torch.cat([specific[m] for m in MODALITIES], dim=1)  # [B, 3S, d]
        state = spec_all.detach()
        action = self.policy(state)  # [B, 3S, 1]
        weighted = spec_all * action
        embs, weights = [], []
        for m, w in zip(MODALITIES, modality_chunks(weighted)):
            k = slot_mask[m]
            e = torch.cat([masked_mean(self.common_blocks[m](common[m], k), k),
                           masked_mean(self.specific_blocks[m](w, k), k)], dim=-1)  # [B, 2d]: common, specific
            embs.append(e * torch.sigmoid(self.gates[m](e)))
            weights.append(present[m].to(e.dtype))
        wsum = torch.stack(weights, 0).sum(0).clamp_min(1.0)[:, None]
        fused = sum(e * w[:, None] for e, w in zip(embs, weights)) / wsum
        prediction = self.head(fused).squeeze(-1)
        state_mask = torch.cat([slot_mask[m] for m in MODALITIES], dim=1)
        aux = {"state": state, "action": action, "state_mask": state_mask,
               "common": torch.cat([common[m] for m in MODALITIES], dim=1), "specific": spec_all}
        return ModelOutput(prediction, aux)


class MMCLObjective(Objective):
    """Prediction + critic (TD, L1) + policy (−Q) losses with replay buffer and target networks.

    Owns the critic, the target critic and target policy (frozen buffer copies) and the replay
    buffer; holds a plain (unregistered) reference to the model's policy so its parameters are
    not registered twice. See the module docstring for the gradient isolation.
    """

    def __init__(self, config: MMCLConfig, policy: MMCLPolicy):
        super().__init__()
        self.config = config
        self.__dict__["_policy"] = policy  # not a submodule: the model owns it
        self.critic = MMCLCritic(config)
        self.target_critic = TargetCopy(self.critic)
        self.target_policy = TargetCopy(policy)
        self.replay = ReplayBuffer(config.replay_capacity)

    @property
    def policy(self) -> MMCLPolicy:
        return self.__dict__["_policy"]

    def reward(self, prediction: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        err = (prediction.detach() - label.to(prediction.dtype)).abs()
        if self.config.reward == "exp":
            return torch.exp(-err)
        return 1.0 - err / 6.0

    def forward(self, output: ModelOutput, batch: Batch) -> LossOutput:
        c = self.config
        pred = output.prediction
        label = batch.label.to(pred.dtype)
        prediction = c.prediction_weight * F.l1_loss(pred, label)

        state, action, mask = output.aux["state"].detach(), output.aux["action"].detach(), output.aux["state_mask"]
        reward = self.reward(pred, label)
        if self.training:
            self.replay.add(state, action, mask, reward)
            n = c.replay_batch or state.shape[0]
            s, a, k, r = self.replay.sample(n)
        else:
            s, a, k, r = state, action, mask, reward

        # critic: L1 TD error against the target networks (no gradient into the targets or inputs)
        q = self.critic(s, a, k)
        with torch.no_grad():
            s_next = s * a
            a_next = functional_call(self.policy, self.target_policy.params(), (s_next,))
            q_next = functional_call(self.critic, self.target_critic.params(), (s_next, a_next, k))
            target = r + c.gamma * q_next
        critic = c.critic_weight * F.l1_loss(q, target)

        # policy: maximise Q(s, pi(s)) through the action only (critic weights detached)
        q_pi = functional_call(self.critic, frozen_params(self.critic), (s, self.policy(s), k))
        policy = -c.policy_weight * q_pi.mean()

        total = prediction + critic + policy
        return LossOutput(total, {"prediction": prediction, "critic": critic, "policy": policy})

    @torch.no_grad()
    def after_step(self, model: MSAModel) -> None:
        """Soft target updates: target <- (1 - tau) * target + tau * online."""
        self.target_critic.soft_update(self.critic, self.config.tau)
        self.target_policy.soft_update(self.policy, self.config.tau)
