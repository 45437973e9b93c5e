"""MMCL specifics: shapes, decoupling, policy range, replay buffer, target soft updates, gradient isolation, fit.

Generic checks (absent modalities, length 1, batch 1, padding invariance) run for every model in
test_registry.py.
"""

from __future__ import annotations

import json

import pytest
import torch

from msa_toolkit.data.batch import Batch, synthetic_batch
from msa_toolkit.models import create_model, list_models
from msa_toolkit.models._mmcl_parts import ReplayBuffer, resample_to_grid
from msa_toolkit.models.mmcl import MMCL

DIMS = dict(text_dim=16, audio_dim=5, vision_dim=7)
TINY = dict(DIMS, d_model=16, seq_len=6, num_heads=4, ff_dim=32, replay_capacity=12)


def tiny(**kw) -> MMCL:
    torch.manual_seed(0)
    return create_model("mmcl", **{**TINY, **kw})


def batch(b=5, lengths=(6, 9, 7), seed=0) -> Batch:
    return synthetic_batch(b, lengths=lengths, dims=(16, 5, 7), seed=seed)


def test_registered_with_presets():
    assert "mmcl" in list_models()
    for preset in ("mosi", "mosei"):
        m = create_model("mmcl", preset=preset)
        assert m.config.d_model == 256 and m.config.prediction_weight == 7 and m.config.critic_weight == 13
        # config round-trips through JSON (checkpoints rebuild from it)
        again = create_model("mmcl", **json.loads(json.dumps(m.config.to_dict())))
        assert again.config == m.config
        assert again.num_parameters() == m.num_parameters()


def test_forward_shapes_and_components_finite():
    m = tiny()
    b = batch()
    out = m(b)
    S, d = m.config.seq_len, m.config.d_model
    assert out.prediction.shape == (5,)
    assert out.aux["state"].shape == (5, 3 * S, d)
    assert out.aux["action"].shape == (5, 3 * S, 1)
    assert out.aux["state_mask"].shape == (5, 3 * S)
    loss = m.objective(out, b)
    assert set(loss.components) == {"prediction", "critic", "policy"}
    for v in loss.components.values():
        assert torch.isfinite(v)
    assert torch.allclose(loss.total, sum(loss.components.values()))


def test_policy_weights_in_open_unit_interval():
    m = tiny()
    a = m(batch()).aux["action"]
    assert bool((a > 0).all()) and bool((a < 1).all())


def test_gradients_reach_every_trainable_parameter():
    m = tiny()
    b = batch(b=5)  # odd batch: an L1 gradient on the output bias cannot cancel exactly
    loss = m.objective(m(b), b)
    loss.total.backward()
    dead = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert dead == []
    # targets are buffers: never optimised, never counted as parameters
    names = [n for n, _ in m.named_parameters()]
    assert not any("target" in n for n in names)
    assert any("target_critic" in n for n, _ in m.named_buffers())


def test_critic_and_policy_gradients_are_isolated():
    m = tiny()
    b = batch()
    out = m(b)
    loss = m.objective(out, b)
    critic_params = list(m.objective.critic.parameters())
    policy_params = list(m.policy.parameters())
    # the policy loss moves the policy only, never the critic
    g = torch.autograd.grad(loss.components["policy"], critic_params + policy_params, allow_unused=True)
    assert all(x is None or float(x.abs().sum()) == 0 for x in g[: len(critic_params)])
    assert any(x is not None and float(x.abs().sum()) > 0 for x in g[len(critic_params):])
    # the critic loss moves the critic only (replay inputs are detached)
    enc = list(m.proj.parameters()) + policy_params
    g = torch.autograd.grad(loss.components["critic"], critic_params + enc, allow_unused=True)
    assert any(x is not None and float(x.abs().sum()) > 0 for x in g[: len(critic_params)])
    assert all(x is None for x in g[len(critic_params):])


def test_after_step_soft_update_is_exact():
    m = tiny(tau=0.25)
    obj = m.objective
    before_c = {k: v.clone() for k, v in obj.target_critic.params().items()}
    before_p = {k: v.clone() for k, v in obj.target_policy.params().items()}
    with torch.no_grad():  # move the online networks away from their copies
        for p in list(obj.critic.parameters()) + list(m.policy.parameters()):
            p.add_(torch.randn_like(p))
    online_c = dict(obj.critic.named_parameters())
    online_p = dict(m.policy.named_parameters())
    obj.after_step(m)
    for k, v in obj.target_critic.params().items():
        assert torch.allclose(v, 0.75 * before_c[k] + 0.25 * online_c[k], atol=1e-6), k
        assert not torch.allclose(v, before_c[k])
    for k, v in obj.target_policy.params().items():
        assert torch.allclose(v, 0.75 * before_p[k] + 0.25 * online_p[k], atol=1e-6), k


def test_targets_start_as_copies_and_follow_training():
    m = tiny()
    for k, v in m.objective.target_policy.params().items():
        assert torch.equal(v, dict(m.policy.named_parameters())[k])
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    b = batch()
    before = {k: v.clone() for k, v in m.objective.target_critic.params().items()}
    loss = m.objective(m(b), b)
    loss.total.backward()
    opt.step()
    m.objective.after_step(m)
    assert any(not torch.equal(before[k], v) for k, v in m.objective.target_critic.params().items())


def test_replay_buffer_fills_and_caps():
    m = tiny(replay_capacity=12)
    rb = m.objective.replay
    assert len(rb) == 0
    sizes = []
    for i in range(4):
        b = batch(b=5, seed=i)
        m.objective(m(b), b)
        sizes.append(len(rb))
    # 5, 10; then 10 + 5 >= 12: the oldest half (5) goes first -> 10; again -> 10
    assert sizes == [5, 10, 10, 10]
    assert rb.state.shape[0] == 12
    # eval mode stores nothing
    m.eval()
    b = batch(seed=9)
    m.objective.eval()
    m.objective(m(b), b)
    assert len(rb) == 10
    # the buffer is not part of checkpoints
    assert not any(k.startswith("objective_.replay") for k in m.state_dict())


def _add(rb, values):
    n = len(values)
    v = torch.tensor(values, dtype=torch.float32)
    rb.add(v.view(n, 1, 1).expand(n, 2, 1), torch.zeros(n, 2, 1), torch.ones(n, 2, dtype=torch.bool), v)


def test_replay_buffer_halves_when_full_as_the_reference():
    """MMCL utils.ReplayBuffer.add_batch: count + n < size appends; otherwise the oldest half goes, then append."""
    rb = ReplayBuffer(6)
    _add(rb, [0, 1])
    _add(rb, [2, 3])
    assert rb.reward[:len(rb)].tolist() == [0, 1, 2, 3]
    _add(rb, [4, 5])  # 4 + 2 >= 6: drop [0, 1], then append
    assert rb.reward[:len(rb)].tolist() == [2, 3, 4, 5]
    _add(rb, [6, 7, 8, 9, 10])  # drop [2, 3]; 2 + 5 rows outgrow the capacity, as the reference's list does
    assert rb.reward[:len(rb)].tolist() == [4, 5, 6, 7, 8, 9, 10]
    assert torch.equal(rb.state[:len(rb), 0, 0], rb.reward[:len(rb)])


def test_replay_buffer_samples_without_replacement():
    rb = ReplayBuffer(100)
    _add(rb, list(range(10)))
    torch.manual_seed(0)
    for _ in range(20):  # with replacement, 20 draws of 6 from 10 would repeat a row almost surely
        s, a, k, r = rb.sample(6)
        assert s.shape == (6, 2, 1) and len(set(r.tolist())) == 6
    s, a, k, r = rb.sample(50)  # fewer held than asked: all of them, oldest first
    assert r.tolist() == list(range(10))


def test_reward_kinds():
    m = tiny()
    pred, y = torch.tensor([0.0, 1.0, -3.0]), torch.tensor([0.0, 0.0, 3.0])
    assert torch.allclose(m.objective.reward(pred, y), torch.exp(-torch.tensor([0.0, 1.0, 6.0])))
    m2 = tiny(reward="linear")
    assert torch.allclose(m2.objective.reward(pred, y), torch.tensor([1.0, 5 / 6, 0.0]))


def test_resample_to_grid():
    x = torch.arange(8.0).view(1, 8, 1).repeat(2, 1, 1)
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 4:] = False
    y, slots = resample_to_grid(x, mask, 4)
    assert y[0, :, 0].tolist() == [0.5, 2.5, 4.5, 6.5]
    assert y[1, :, 0].tolist() == [0.0, 1.0, 2.0, 3.0]  # identity on the 4 valid steps
    assert slots.all()
    y, slots = resample_to_grid(x[:, :1], mask[:, :1], 3)  # length 1 repeats
    assert y[:, :, 0].tolist() == [[0.0] * 3, [0.0] * 3]
    y, slots = resample_to_grid(x, torch.zeros_like(mask), 3)
    assert not slots.any() and float(y.abs().sum()) == 0


def test_decoupling_rows_are_convex_combinations():
    torch.manual_seed(0)
    x = {m: torch.randn(2, 4, 8) for m in ("text", "audio", "vision")}
    present = {m: torch.ones(2, dtype=torch.bool) for m in x}
    common, specific = MMCL.decouple(x, present)
    # each common/specific step is a convex combination of the modality's own steps -> inside their hull
    for m in x:
        lo, hi = x[m].min(dim=1, keepdim=True).values, x[m].max(dim=1, keepdim=True).values
        assert bool((common[m] >= lo - 1e-5).all() and (common[m] <= hi + 1e-5).all())
        assert bool((specific[m] >= lo - 1e-5).all() and (specific[m] <= hi + 1e-5).all())
    # absent vision: text/audio decoupling only looks at the present other modality, vision is zero
    present["vision"] = torch.tensor([True, False])
    common2, specific2 = MMCL.decouple(x, present)
    assert float(common2["vision"][1].abs().sum()) == 0
    assert torch.allclose(common2["text"][0], common["text"][0])


def test_absent_modality_as_dataset_convention():
    # a text-only dataset: absent modalities are [B, 1, 1] zeros with all-False masks
    m = tiny(audio_dim=1, vision_dim=1)
    b = batch()
    none = torch.zeros(5, 1, dtype=torch.bool)
    b = Batch(text=b.text, text_mask=b.text_mask, audio=torch.zeros(5, 1, 1), audio_mask=none,
              vision=torch.zeros(5, 1, 1), vision_mask=none, label=b.label)
    loss = m.objective(m(b), b)
    assert torch.isfinite(loss.total)


def test_deterministic_under_seed():
    b = batch()
    outs = []
    for _ in range(2):
        m = tiny()
        torch.manual_seed(1)
        out = m(b)
        outs.append((out.prediction, m.objective(out, b).total))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    m = tiny()
    m.eval()
    assert torch.equal(m(b).prediction, m(b).prediction)


def synthetic_task(n=48, seed=0) -> Batch:
    """Label depends on text, audio and vision: y = 3 tanh(t0 + a0 - v0 over each sequence's mean)."""
    g = torch.Generator().manual_seed(seed)
    b = synthetic_batch(n, lengths=(6, 9, 7), dims=(16, 5, 7), seed=seed)
    t = (b.text[..., 0] * b.text_mask).sum(1) / b.text_mask.sum(1)
    a = (b.audio[..., 0] * b.audio_mask).sum(1) / b.audio_mask.sum(1)
    v = (b.vision[..., 0] * b.vision_mask).sum(1) / b.vision_mask.sum(1)
    b.label = 3 * torch.tanh(t + a - v + 0.05 * torch.randn(n, generator=g))
    return b


def test_short_fit_reduces_prediction_loss():
    m = tiny(d_model=32, ff_dim=64, dropout=0.0)
    b = synthetic_task()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    first = last = None
    for step in range(60):
        opt.zero_grad()
        loss = m.objective(m(b), b)
        loss.total.backward()
        opt.step()
        m.objective.after_step(m)
        v = float(loss.components["prediction"].detach())
        first = v if first is None else first
        last = v
    assert last < 0.5 * first, (first, last)


def test_mmcl_rejects_text_encoder():
    with pytest.raises(ValueError, match="text_encoder"):
        create_model("mmcl", preset="tiny", text_encoder="whatever", **DIMS)


def _mc_mean(head: torch.nn.Sequential, x: torch.Tensor, n: int = 8000) -> torch.Tensor:
    """Mean over ``n`` dropout draws of ``head(x)`` (dropout on, everything else as in eval)."""
    head.eval()
    for mod in head:
        if isinstance(mod, torch.nn.Dropout):
            mod.train()
    with torch.no_grad():
        out = head(x.repeat(n, 1)).view(n, *x.shape[:-1], -1).mean(0)
    head.eval()
    return out


def test_head_dropout_does_not_shift_eval_predictions():
    """Eval output = expectation of the training-time output, for the prediction head and the critic.

    Dropout in front of the LayerNorm (the reference order with LayerNorm in place of BatchNorm)
    breaks this: the normalisation sees sparser inputs in training, and eval predictions came out
    with 1.5x the spread on CMU-MOSI. The contrast below rebuilds that order with the same weights.
    """
    torch.manual_seed(0)
    m = tiny(dropout=0.5).eval()
    for head, width in ((m.head, 2 * 16), (m.objective.critic.proj, 3 * (16 + 4))):
        x = torch.randn(64, width) * 3
        with torch.no_grad():
            exact = head(x)
        gap = (_mc_mean(head, x) - exact).abs().mean()
        assert gap < 0.03 * float(exact.std()), (gap, exact.std())
    h = m.head  # Linear, ReLU, LayerNorm, Dropout, Linear
    old = torch.nn.Sequential(h[0], torch.nn.Dropout(0.5), h[1], h[2], h[4]).eval()
    x = torch.randn(64, 2 * 16) * 3
    with torch.no_grad():
        exact_old = old(x)
    gap = (_mc_mean(old, x) - exact_old).abs().mean()
    assert gap > 0.15 * float(exact_old.std()), (gap, exact_old.std())


def _reference_common_block(x: torch.Tensor, blk, heads: int) -> torch.Tensor:
    """The authors' ``Self_Attention`` written out: softmax(q k^T / sqrt(dh)) v, then LayerNorm(c + out(c))."""
    B, L, D = x.shape
    q, k, v = (t.view(B, L, heads, D // heads).transpose(1, 2) for t in blk.qkv(x).chunk(3, dim=-1))
    w = torch.softmax(q @ k.transpose(-1, -2) / (D // heads) ** 0.5, dim=-1)
    c = (w @ v).transpose(1, 2).reshape(B, L, D)
    return blk.norm(c + blk.to_out(c))


def test_attention_common_block_is_the_authors_block():
    from msa_toolkit.models._mmcl_parts import AttentionOnlyBlock
    from msa_toolkit.layers import EncoderLayer

    m = tiny(common_block="attention")
    assert all(isinstance(b, AttentionOnlyBlock) for b in m.common_blocks.values())
    assert all(isinstance(b, EncoderLayer) for b in tiny().common_blocks.values())  # the default: the paper's
    blk = m.common_blocks["text"].eval()
    x = torch.randn(3, 6, 16)
    full = torch.ones(3, 6, dtype=torch.bool)
    assert torch.allclose(blk(x, full), _reference_common_block(x, blk, 4), atol=1e-6)
    # padding: the padded steps are zero and the valid ones equal the unpadded computation on them alone
    mask = full.clone()
    mask[1, 4:] = False
    y = blk(x, mask)
    assert torch.equal(y[1, 4:], torch.zeros(2, 16))
    assert torch.allclose(y[1, :4], _reference_common_block(x[1:2, :4], blk, 4)[0], atol=1e-6)
    # no feed-forward: 3 x (the FFN and one LayerNorm) fewer parameters than the default model
    d, f = 16, 32
    assert tiny().num_parameters() - m.num_parameters() == 3 * ((d * f + f) + (f * d + d) + 2 * d)
    # trains: every parameter gets a gradient, losses finite
    b = batch()
    loss = m.train().objective(m(b), b)
    loss.total.backward()
    assert torch.isfinite(loss.total)
    assert [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []
    with pytest.raises(ValueError, match="common_block"):
        tiny(common_block="ffn")


def test_param_groups_are_the_authors_three_optimisers():
    m = tiny(actor_plateau_patience=5, critic_plateau_patience=5)
    groups = m.param_groups(1e-3, 0.0)
    assert [g["name"] for g in groups] == ["model", "actor", "critic"]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == sum(1 for p in m.parameters() if p.requires_grad)
    assert {id(p) for p in m.objective.critic.parameters()} == {id(p) for p in groups[2]["params"]}
    assert {id(p) for p in m.policy.parameters()} <= {id(p) for p in groups[1]["params"]}
    assert [g.get("plateau_patience") for g in groups] == [None, 5, 5]
    assert all("plateau_patience" not in g for g in tiny().param_groups(1e-3, 0.0))  # 0 = the trainer's


def test_group_plateau_equals_three_reduce_on_plateau_schedulers():
    """The trainer's scheduler for MMCL's reference recipe follows the reference's three ReduceLROnPlateau
    (0.95/30 model, 0.95/5 actor and critic, all stepped on the same validation loss)."""
    from msa_toolkit.training.config import TrainConfig
    from msa_toolkit.training.optim import GroupPlateau, build_optimizer, build_scheduler

    m = tiny(actor_plateau_patience=5, critic_plateau_patience=5)
    tc = TrainConfig(scheduler="plateau", plateau_factor=0.95, plateau_patience=30, lr=1e-3)
    opt = build_optimizer(m, tc)
    sched, when = build_scheduler(opt, m, tc, 100, "min")
    assert isinstance(sched, GroupPlateau) and when == "epoch"
    refs = []
    for _ in range(3):
        ref_opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        refs.append(ref_opt)
    ref_scheds = [torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="min", patience=p, factor=0.95)
                  for o, p in zip(refs, (30, 5, 5))]
    losses = [1.0, 0.9] + [0.95] * 40 + [0.5] + [0.6] * 10
    for i, loss in enumerate(losses):
        sched.step(loss)
        for s in ref_scheds:
            s.step(loss)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([o.param_groups[0]["lr"] for o in refs]), i
    assert opt.param_groups[1]["lr"] < opt.param_groups[0]["lr"]  # the actor's patience ran out more often
    # resume: the state round-trips
    again = build_scheduler(build_optimizer(m, tc), m, tc, 100, "min")[0]
    again.load_state_dict(sched.state_dict())
    assert [s.num_bad_epochs for s in again.schedulers] == [s.num_bad_epochs for s in sched.schedulers]


def test_the_grid_is_capped_at_the_longest_input_and_one_step_features_compute_the_same():
    """Utterance-level (one-step) features: the 50-slot grid only repeated the one step 50 times (about 38x the
    training time); the capped grid computes the same prediction and losses."""
    one = dict(TINY, seq_len=50, text_len=1, audio_len=1, vision_len=1)
    assert tiny(**one).grid == 1
    assert tiny(**dict(TINY, seq_len=6, text_len=4, audio_len=9, vision_len=2)).grid == 6
    assert tiny(**dict(TINY, seq_len=50, text_len=4, audio_len=9, vision_len=2)).grid == 9
    b = batch(lengths=(1, 1, 1))
    capped, full = tiny(**one).eval(), tiny(**one).eval()
    full.grid = 50  # what the model computed before the cap
    with torch.no_grad():
        oc, of = capped(b), full(b)
        assert of.aux["state"].shape[1] == 150 and oc.aux["state"].shape[1] == 3
        torch.testing.assert_close(oc.prediction, of.prediction)
        lc, lf = capped.objective(oc, b), full.objective(of, b)
    for k in ("prediction", "critic", "policy"):
        torch.testing.assert_close(lc.components[k], lf.components[k], msg=k)
