"""Parity of the toolkit's MMCL with the authors' code (smwanghhh/MMCL): what can be compared.

    python benchmarks/parity/parity_mmcl.py --reference-dir /path/to/MMCL [--json PATH]

Writes benchmarks/results/parity/parity_mmcl[_float64].json unless ``--json`` names another path (``--json ''``: none).

The public reference is IEMOCAP emotion *classification* (``network.py``, ``train.py``: an
8-logit head with BatchNorm, cross-entropy, reward = probability of the true class); the
toolkit's MMCL is a *regression* variant. So the prediction head, the prediction loss and the
reward cannot be compared. Everything else is: both sides are built at the toolkit's MOSI
preset (d 256, 50 aligned steps, 768/74/47 inputs, 4 heads, feed-forward 2048) with the
reference's ``args`` set to the same widths, every dropout 0, and compared on

- the modality projections and the parameter-free common/specific decoupling;
- the policy (actor actions), the policy-weighted specific temporal encoders, the gates and
  the fusion, i.e. the head's input (the reference ``Actor.predict``'s input);
- the centralised critic Q(s, a), the target Q, and the critic (TD, L1) and policy (-Q)
  losses of ``train.py`` on the same transitions;
- the gradients of all these parameters and the parameters after one Adam step, for a
  surrogate loss on the head input (the prediction loss is not comparable) plus the critic
  and policy losses.

The toolkit is built with ``common_block="attention"`` (its reference recipe's setting: the
authors' attention-only ``Self_Attention``, the toolkit's :class:`AttentionOnlyBlock`; the default
is the paper's full transformer layer), so the common block is compared as the toolkit's own code.
Bridged in the toolkit *instance* (in memory; the toolkit's code is unchanged), each a documented
deviation (msa_toolkit/models/mmcl.py): the critic's LayerNorm is the reference's BatchNorm1d, the targets are copies of the online networks on both sides, the
transition is the toolkit's (s = the batch's detached specific features, s' = s * a), the
reward is a fixed tensor on both sides, and the replay buffer returns the current batch in
order. The reference's policy loss is back-propagated with the critic's parameters frozen:
the reference computes critic gradients from it but never applies them (they are zeroed before
the next critic step), the toolkit does not compute them.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (Namespace, ParamMap, ParityReport, base_parser, check_coverage,  # noqa: E402
                           check_reference_dir, compare_training, finish, fused, import_reference, load_mapped,
                           reference_commit, same)

REPO = "smwanghhh/MMCL"
EXPECTED_FILES = ("network.py", "train.py", "utils.py")
#: toolkit modality -> reference suffix / name
KEY = {"text": "t", "audio": "a", "vision": "v"}
LONG = {"text": "text", "audio": "audio", "vision": "vision"}
#: reference layers that cannot be compared (the classification head)
REF_UNUSED = ("actor.predict.",)
#: toolkit layers that cannot be compared (the regression head)
TK_UNUSED = ("head.",)


def _pairs(ref: str, tk: str, names: dict[str, str]) -> list[ParamMap]:
    return [same(f"{ref}.{a}.{p}", f"{tk}.{b}.{p}") for a, b in names.items() for p in ("weight", "bias")]


def _torch_layer(ref: str, tk: str) -> list[ParamMap]:
    """A one-layer ``nn.TransformerEncoder`` (post-norm, ReLU) -> the toolkit's EncoderLayer."""
    r = f"{ref}.layers.0"
    maps = [same(f"{r}.self_attn.in_proj_weight", f"{tk}.attn.qkv.weight"),
            same(f"{r}.self_attn.in_proj_bias", f"{tk}.attn.qkv.bias")]
    return maps + _pairs(r, tk, {"self_attn.out_proj": "attn.to_out", "linear1": "ff.0", "linear2": "ff.3",
                                 "norm1": "norm1", "norm2": "norm2"})


def weight_map() -> list[ParamMap]:
    """Reference (``model``, ``actor``, ``critic``) names -> toolkit names, the comparable part of MMCL.

    Toolkit names assumed (msa_toolkit/models/mmcl.py): ``proj.<m>``, ``common_blocks.<m>`` (the
    attention-only block: ``qkv``, ``out`` (= ``dense1``), ``norm``), ``policy.heads.<m>``, ``specific_blocks.<m>``,
    ``gates.<m>.{0,1}``, ``objective_.critic.{encoders.<m>,proj.{0,1,3,5}}``.
    """
    maps = []
    for m, k in KEY.items():
        maps += [same(f"model.{LONG[m]}_map.{p}", f"proj.{m}.{p}") for p in ("weight", "bias")]
        att = f"model.attention_{LONG[m]}"
        maps += [fused([f"{att}.{x}.{p}" for x in ("query", "key", "value")], f"common_blocks.{m}.qkv.{p}")
                 for p in ("weight", "bias")]
        maps += _pairs(att, f"common_blocks.{m}", {"dense1": "to_out", "norm": "norm"})
        maps += [same(f"actor.{LONG[m]}_action.0.{p}", f"policy.heads.{m}.{p}") for p in ("weight", "bias")]
        maps += _torch_layer(f"actor.temporal_{k}", f"specific_blocks.{m}")
        maps += _pairs(f"actor.weight_{k}", f"gates.{m}", {"0": "0", "2": "1"})
        maps += _torch_layer(f"critic.critic_{k}", f"objective_.critic.encoders.{m}")
    maps += _pairs("critic.proj", "objective_.critic.proj", {"0": "0", "1": "1", "4": "3", "5": "5"})
    return maps


class _CurrentBatch(nn.Module):
    """Replay stand-in: ``sample`` returns the transitions of the last ``add``, in order."""

    def add(self, *transition: torch.Tensor) -> None:
        self.last = transition

    def sample(self, n: int) -> tuple[torch.Tensor, ...]:
        return self.last


def bridge_toolkit(tk, d: int, reward: torch.Tensor) -> None:
    """Make this toolkit *instance* the reference's function where the two differ by design (in memory)."""
    critic = tk.objective.critic
    assert isinstance(critic.proj[3], nn.LayerNorm), "toolkit critic layout changed: proj.3 is no longer the LayerNorm"
    critic.proj[3] = nn.BatchNorm1d(d)
    tk.objective.replay = _CurrentBatch()
    tk.objective.reward = lambda prediction, label: reward


def reference_args(d: int, seq_len: int, heads: int, dims: dict[str, int]) -> Namespace:
    """``train.py``'s args at the toolkit's widths, dropouts 0."""
    return Namespace({"emb_size": d, "seqlength": seq_len, "n_head": heads, "dropout": 0.0, "atten_dropout": 0.0,
                      "dim_t": dims["text"], "dim_a": dims["audio"], "dim_v": dims["vision"]})


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """``train.py``'s target update (written out: it is inline in the training loop)."""
    with torch.no_grad():
        for tp, p in zip(target.parameters(), source.parameters()):
            tp.data.copy_(tp.data * (1.0 - tau) + p.data * tau)


class _Recorder:
    """Forward (pre-)hook results in call order."""

    def __init__(self):
        self.items: list[torch.Tensor] = []

    def pre(self, module, args):
        self.items.append(args[0])

    def post(self, module, args, out):
        self.items.append(out)


@contextlib.contextmanager
def keep_float64(enabled: bool):
    """``--float64`` only: the toolkit casts its inputs with ``.float()``; keep float64 tensors as they are."""
    if not enabled:
        yield
        return
    cast = torch.Tensor.float
    torch.Tensor.float = lambda self, *args, **kwargs: self if self.dtype == torch.float64 else cast(self, *args,
                                                                                                      **kwargs)
    try:
        yield
    finally:
        torch.Tensor.float = cast


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--float64", action="store_true",
                    help="run the same comparison in float64 (both models, inputs, and the toolkit's input casts), "
                         "to tell fp32 rounding from a real difference")
    a = ap.parse_args(argv)
    dtype = torch.get_default_dtype()
    if a.float64:
        torch.set_default_dtype(torch.float64)
    try:
        return _run(a)
    finally:
        torch.set_default_dtype(dtype)


def _run(a) -> int:
    """The comparison (see the module docstring); ``a`` = parsed arguments."""
    ref_dir = check_reference_dir(a.reference_dir, EXPECTED_FILES, REPO)
    from msa_toolkit.data.batch import Batch
    from msa_toolkit.models import create_model

    network = import_reference(ref_dir, "network")
    torch.manual_seed(a.seed)
    tk = create_model("mmcl", "mosi", dropout=0.0, attn_dropout=0.0, common_block="attention")
    c = tk.config
    d, S, h = c.d_model, c.seq_len, c.num_heads
    dims = {"text": c.text_dim, "audio": c.audio_dim, "vision": c.vision_dim}
    args = reference_args(d, S, h, dims)
    ref = nn.ModuleDict({"model": network.Model(args), "actor": network.Actor(args), "critic": network.Critic(args)})
    # targets start as copies of the online networks (toolkit practice; the reference draws them apart)
    actor_target, critic_target = copy.deepcopy(ref["actor"]), copy.deepcopy(ref["critic"])

    g = torch.Generator().manual_seed(a.seed + 1)
    B = a.batch_size
    x = {m: torch.randn(B, S, dims[m], generator=g) for m in KEY}
    label = torch.empty(B).uniform_(-3, 3, generator=g)
    reward = torch.rand(B, generator=g)
    w_sur = torch.randn(2 * d, generator=g) / (2 * d) ** 0.5  # surrogate loss direction on the head input
    batch = Batch(label=label, **x, **{f"{m}_mask": torch.ones(B, S, dtype=torch.bool) for m in KEY})

    bridge_toolkit(tk, d, reward)
    maps = weight_map()
    check_coverage(maps, ref, tk, ref_unused=REF_UNUSED, tk_unused=TK_UNUSED)
    load_mapped(maps, ref, tk)
    tk.objective.target_critic.soft_update(tk.objective.critic, 1.0)
    tk.objective.target_policy.soft_update(tk.policy, 1.0)
    ref.train(), tk.train(), actor_target.train(), critic_target.train()

    rec = {side: {k: _Recorder() for k in ("common_in", "common_out", "fused", "q")} for side in ("ref", "tk")}
    for m in KEY:
        blk = ref["model"].get_submodule(f"attention_{LONG[m]}")
        blk.register_forward_pre_hook(rec["ref"]["common_in"].pre)
        blk.register_forward_hook(rec["ref"]["common_out"].post)
        tk.common_blocks[m].register_forward_pre_hook(rec["tk"]["common_in"].pre)
        tk.common_blocks[m].register_forward_hook(rec["tk"]["common_out"].post)
    ref["actor"].predict.register_forward_pre_hook(rec["ref"]["fused"].pre)
    tk.head.register_forward_pre_hook(rec["tk"]["fused"].pre)
    for mod in (ref["critic"], critic_target):
        mod.register_forward_hook(rec["ref"]["q"].post)
    tk.objective.critic.register_forward_hook(rec["tk"]["q"].post)
    calls = {"ref": 0, "tk": 0}

    def collected(side: str) -> dict[str, torch.Tensor]:
        r = rec[side]
        q, q_next, q_pi = r["q"].items
        out = {"common": torch.cat(r["common_in"].items, 1), "common_block": torch.cat(r["common_out"].items, 1),
               "fused": r["fused"].items[0], "q": q, "q_next": q_next, "q_pi": q_pi}
        for v in r.values():
            v.items.clear()
        return out

    def ref_fn():
        if calls["ref"]:  # after the previous optimiser step, as train.py updates its targets
            soft_update(critic_target, ref["critic"], c.tau)
            soft_update(actor_target, ref["actor"], c.tau)
        calls["ref"] += 1
        model, actor, critic = ref["model"], ref["actor"], ref["critic"]
        shared_embs, diff_embs = model(x["text"], x["audio"], x["vision"])
        state = diff_embs.detach()
        action = actor(state)
        actor.predictor(shared_embs, actor.update_state(diff_embs, action))
        # train.py's critic and actor losses on the toolkit's transition (s, a, r, s' = s * a)
        s1, a1 = state, action.detach()
        s2 = actor.update_state(s1, a1)
        predicted_q = critic(s1, a1)
        target_q = critic_target(s2, actor_target.forward(s2)) * c.gamma + reward
        critic_loss = torch.mean(nn.L1Loss()(predicted_q, target_q)) * c.critic_weight
        for p in critic.parameters():  # the reference never applies the critic gradients of this loss
            p.requires_grad_(False)
        actor_loss = -1 * torch.mean(critic(s1, actor.forward(s1))) * c.policy_weight
        for p in critic.parameters():
            p.requires_grad_(True)
        out = {**collected("ref"), "specific": diff_embs, "action": action, "critic": critic_loss,
               "policy": actor_loss}
        out["surrogate"] = (out["fused"] @ w_sur).pow(2).mean()
        out["total"] = out["surrogate"] + critic_loss + actor_loss
        return out

    def tk_fn():
        if calls["tk"]:
            tk.objective.after_step(tk)
        calls["tk"] += 1
        with keep_float64(a.float64):
            o = tk(batch)
            loss = tk.objective(o, batch)
        out = {**collected("tk"), "specific": o.aux["specific"], "action": o.aux["action"], **loss.components}
        out["surrogate"] = (out["fused"] @ w_sur).pow(2).mean()
        out["total"] = out["surrogate"] + loss.components["critic"] + loss.components["policy"]
        return out

    report = ParityReport("mmcl", REPO, reference_commit(ref_dir),
                          {"dtype": "float64" if a.float64 else "float32", "preset": "mosi", "d": d, "seq_len": S,
                           "heads": h, "ff_dim": c.ff_dim, "common_block": c.common_block, "dims": dims,
                           "batch_size": B, "dropout": 0.0, "optimizer": "Adam", "lr": c.lr, "gamma": c.gamma,
                           "tau": c.tau, "loss weights": {"policy": c.policy_weight, "critic": c.critic_weight},
                           "bridged in the toolkit instance": ["critic LayerNorm -> BatchNorm1d",
                                                               "replay = current batch", "fixed reward"]})
    pairs = [(f"forward: {k}", k, k) for k in ("common", "specific", "common_block", "action", "fused", "q", "q_next",
                                               "q_pi")]
    pairs += [(f"loss: {k}", k, k) for k in ("critic", "policy", "surrogate", "total")]
    compare_training(report, ref, tk, maps, ref_fn, tk_fn, pairs,
                     lambda ps: torch.optim.Adam(ps, lr=c.lr), seed=a.seed, tolerance=a.tolerance,
                     measured_floor=True, resync=True)
    report.not_compared += [
        "the prediction head, the prediction loss and the reward: the reference is IEMOCAP classification "
        "(Linear-Dropout-ReLU-BatchNorm-Linear to 8 logits, cross-entropy, reward = p(true class)); the toolkit "
        "regresses (Linear-ReLU-LayerNorm-Dropout-Linear to 1, 7 x L1, reward exp(-|error|)); "
        "a surrogate loss on the head input stands in for the prediction loss",
        "the toolkit's default common block (the paper's full transformer layer; compared here: "
        "common_block='attention', the authors' attention-only block) and its critic LayerNorm (the reference's "
        "BatchNorm1d swapped in)",
        "transition chaining across mini-batches, replay sampling and its start (one-batch transitions on both "
        "sides here), independent target initialisation, the three optimisers (one Adam over all parameters here)",
        "padding masks and unaligned resampling (aligned inputs of seq_len steps: the toolkit's resampling is "
        "the identity)",
        "dropout (all 0 for a deterministic comparison)"]
    return finish(report, a.json, "float64" if a.float64 else "")


if __name__ == "__main__":
    sys.exit(main())
