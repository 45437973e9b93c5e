"""What is specific to the MMSA zoo's Self-MM, MISA, MMIM and MAG-BERT (the registry tests cover the rest)."""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.data.batch import Batch, synthetic_batch
from msa_toolkit.layers.losses import central_moment_discrepancy, soft_orthogonality
from msa_toolkit.models import create_model

#: the tests read scalar loss values of tensors that require grad (the values, not their graph)
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")

DIMS = dict(text_dim=16, audio_dim=5, vision_dim=7, text_len=6, audio_len=9, vision_len=7)


def batch(n: int = 6, seed: int = 0, **kw) -> Batch:
    return synthetic_batch(n, (6, 9, 7), (16, 5, 7), seed=seed, **kw)


def step(model, b):
    model.zero_grad(set_to_none=True)
    out = model(b)
    loss = model.objective(out, b)
    loss.total.backward()
    return out, loss


def grad_of(model, prefix: str) -> float:
    return sum(float(p.grad.abs().sum()) for n, p in model.named_parameters() if n.startswith(prefix)
               and p.grad is not None)


# --------------------------------------------------------------------------- Self-MM


def test_self_mm_unimodal_heads_learn_from_the_third_visit_and_labels_move():
    torch.manual_seed(0)
    m = create_model("self_mm", "tiny", **DIMS).train()
    b = batch()
    _, first = step(m, b)
    assert {k: float(v.detach()) for k, v in first.components.items() if k != "l1_fusion"} == \
        {"l1_text": 0.0, "l1_audio": 0.0, "l1_vision": 0.0}
    assert grad_of(m, "heads.text.") == 0.0  # weight tanh(0) on a first visit
    assert torch.equal(m.objective.labels[:, 1], m.objective.labels[:, 0])  # initialised with the label
    step(m, b)  # the second visit's loss still reads the initial labels; ULGM moves them after it
    assert grad_of(m, "heads.text.") == 0.0
    assert not torch.equal(m.objective.labels[:, 1], m.objective.labels[:, 0])
    assert m.objective.labels.abs().max() <= m.config.label_bound
    step(m, b)
    assert grad_of(m, "heads.text.") > 0 and grad_of(m, "heads.audio.") > 0 and grad_of(m, "heads.vision.") > 0
    assert m.objective.visits.tolist() == [3] * b.size


def test_self_mm_state_is_saved_and_resumed_and_keyed_by_sample_id():
    torch.manual_seed(0)
    m = create_model("self_mm", "tiny", **DIMS).train()
    b = batch()
    step(m, b), step(m, b)
    again = create_model("self_mm", "tiny", **DIMS)
    again.load_state_dict(m.state_dict())
    for name in ("keys", "labels", "visits", "feature_fusion", "feature_text"):
        assert torch.equal(getattr(again.objective, name), getattr(m.objective, name))
    # the same samples in another order find their own rows
    perm = torch.tensor([3, 1, 5, 0, 2, 4])
    shuffled = Batch(**{k: (v[perm] if isinstance(v, torch.Tensor) else v) for k, v in vars(b).items()
                        if k != "ids"}, ids=[b.ids[i] for i in perm.tolist()])
    rows = m.objective.rows(shuffled.ids, shuffled.label)
    assert torch.equal(m.objective.labels[rows, 0], shuffled.label)


def test_self_mm_training_needs_ids_and_eval_is_the_fusion_l1():
    m = create_model("self_mm", "tiny", **DIMS)
    b = batch()
    b.ids = []
    with pytest.raises(ValueError, match="sample ids"):
        m.objective(m(b), b)
    m.eval()
    loss = m.objective(m(b), b)
    assert set(loss.components) == {"l1_fusion"} and len(m.objective.keys) == 0


def test_param_groups_cover_every_trainable_parameter_once(tiny_bert):
    for name, extra in (("self_mm", {}), ("mmim", {})):
        m = create_model(name, "tiny", **{**DIMS, "text_dim": 16}, text_encoder=tiny_bert, **extra)
        groups = m.param_groups(1e-3, 0.0)
        ids = [id(p) for g in groups for p in g["params"]]
        assert len(ids) == len(set(ids))
        assert set(ids) == {id(p) for p in m.parameters() if p.requires_grad}
        lrs = {g["lr"] for g in groups}
        assert m.config.text_encoder_lr in lrs and 1e-3 in lrs


# --------------------------------------------------------------------------- MISA


def test_misa_losses_and_their_helpers():
    torch.manual_seed(0)
    m = create_model("misa", "tiny", **DIMS).train()
    _, loss = step(m, batch())
    assert set(loss.components) == {"prediction_mse", "difference", "similarity", "reconstruction"}
    assert all(float(v.detach()) > 0 for v in loss.components.values())
    m.eval()
    assert set(m.objective(m(batch()), batch()).components) == {"prediction_mse"}
    x = torch.randn(32, 4)
    assert float(central_moment_discrepancy(x, x)) == 0.0
    assert float(central_moment_discrepancy(x, x + 1)) == pytest.approx(2.0, rel=1e-5)  # mean shift of 1 per dim
    one = torch.randn(1, 4, requires_grad=True)
    central_moment_discrepancy(one, torch.randn(1, 4)).backward()
    assert torch.isfinite(one.grad).all()
    a, b = torch.randn(16, 3, requires_grad=True), torch.randn(16, 3)
    assert float(soft_orthogonality(a, b, detach_norm=True).detach()) == pytest.approx(
        float(soft_orthogonality(a, b).detach()), rel=1e-4)


# --------------------------------------------------------------------------- MMIM


def test_mmim_each_term_reaches_only_its_own_parameters():
    torch.manual_seed(0)
    m = create_model("mmim", "tiny", **DIMS).train()
    b = batch(12)
    out = m(b)
    loss = m.objective(out, b)
    m.zero_grad(set_to_none=True)
    loss.components["mmilb_lld"].backward(retain_graph=True)
    assert grad_of(m, "objective_.mi.") > 0 and grad_of(m, "fusion.") == 0 and grad_of(m, "proj.") == 0
    m.zero_grad(set_to_none=True)
    loss.components["lld"].backward()
    assert grad_of(m, "objective_.mi.") == 0 and grad_of(m, "proj.") > 0
    assert all(not p.requires_grad for n, p in m.named_parameters() if "entropy_proj" in n)


def test_mmim_entropy_waits_for_the_memory():
    torch.manual_seed(0)
    m = create_model("mmim", "tiny", **DIMS).train()
    b = batch(16)
    b.label = torch.linspace(-2, 2, 16)
    _, first = step(m, b)
    assert float(first.components["entropy"]) == 0.0  # empty memory
    _, second = step(m, b)
    assert float(second.components["entropy"]) != 0.0 and torch.isfinite(second.components["entropy"])
    assert len(m.objective.memory["tv"]) == m.config.memory_size


def test_mmim_with_absent_audio_and_vision_stays_finite():
    """Text-only data (audio and vision absent in every sample, as MOSI transcripts): the MI bounds and the entropy
    of a pair need both modalities; an absent one gives a constant representation whose covariance is singular
    (log det = -inf made the first epoch NaN on the MOSI text benchmark)."""
    torch.manual_seed(0)
    m = create_model("mmim", "tiny", **DIMS).train()
    b = batch(16).drop("audio", "vision")
    b.label = torch.linspace(-2, 2, 16)
    for _ in range(3):
        _, loss = step(m, b)
        assert all(torch.isfinite(v) for v in loss.components.values()), loss.components
        assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    assert float(loss.components["entropy"]) == 0.0 and float(loss.components["lld"]) == 0.0
    # one sample with audio: the text-audio pair has too few samples for a covariance; still finite
    b2 = batch(16)
    b2.label = torch.linspace(-2, 2, 16)
    _, full = step(m, b2)
    assert torch.isfinite(full.total)


# --------------------------------------------------------------------------- MAG-BERT


def test_mag_bert_aligned_needs_word_aligned_inputs_and_the_gate_is_bounded():
    m = create_model("mag_bert", "tiny", **DIMS, av_input="aligned")
    with pytest.raises(ValueError, match="word-aligned"):
        m(batch())  # 9 audio steps for 6 text steps
    aligned = synthetic_batch(3, (6, 6, 6), (16, 5, 7), seed=1)
    assert torch.isfinite(m(aligned).prediction).all()
    e, v, a = aligned.text, aligned.vision, aligned.audio
    mag = m.mag
    mag.norm = torch.nn.Identity()
    shifted = mag(e, v, a)
    assert ((shifted - e).norm(dim=-1) <= m.config.beta_shift * e.norm(dim=-1) + 1e-4).all()


def test_mag_bert_fine_tunes_the_encoder_with_its_pooler(tiny_bert):
    torch.manual_seed(0)
    m = create_model("mag_bert", "tiny", **{**DIMS, "text_dim": 16}, text_encoder=tiny_bert)
    b = synthetic_batch(3, (6, 9, 7), (16, 5, 7), seed=1, with_tokens=True)
    _, loss = step(m.train(), b)
    assert grad_of(m, "text_encoder.model.pooler.") > 0 and grad_of(m, "mag.") > 0
    hooks = m.text_encoder.model.embeddings._forward_hooks
    assert not hooks  # the gate's hook is removed after the forward
