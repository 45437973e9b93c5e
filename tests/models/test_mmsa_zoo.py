"""LMF, MFN, EF-LSTM, LF-DNN (issue 34) and their blocks: what the registry-wide tests do not pin down."""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.data.batch import Batch, synthetic_batch
from msa_toolkit.layers import StepBatchNorm, align_steps, text_timeline
from msa_toolkit.models import create_model
from msa_toolkit.training.optim import build_optimizer
from msa_toolkit.training.config import TrainConfig

DIMS = dict(text_dim=6, audio_dim=3, vision_dim=4, text_len=5, audio_len=8, vision_len=7)


def test_step_batch_norm_equals_batchnorm1d_over_time_channels_without_padding():
    torch.manual_seed(0)
    x = torch.randn(4, 5, 7) * 3 + 1
    ours, ref = StepBatchNorm(5), torch.nn.BatchNorm1d(5)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2), ours.bias.uniform_(-1, 1)
        ref.weight.copy_(ours.weight), ref.bias.copy_(ours.bias)
    for _ in range(2):  # training: batch statistics, running statistics updated alike
        assert torch.allclose(ours(x), ref(x), atol=1e-5)
    assert torch.allclose(ours.running_mean, ref.running_mean, atol=1e-6)
    assert torch.allclose(ours.running_var, ref.running_var, atol=1e-5)
    ours.eval(), ref.eval()
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_step_batch_norm_counts_valid_steps_only_and_trains_on_one_sample():
    torch.manual_seed(0)
    x, mask = torch.randn(3, 4, 2), torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    norm = StepBatchNorm(6)
    y = norm(x, mask)
    assert (y[~mask] == 0).all()
    # step 2 is valid in samples 0 and 2 only: normalised with their 4 values
    v = x[[0, 2], 2].flatten()
    expected = (x[0, 2] - v.mean()) / torch.sqrt(v.var(unbiased=False) + norm.eps)
    assert torch.allclose(y[0, 2], expected, atol=1e-5)
    assert torch.isfinite(StepBatchNorm(6)(torch.randn(1, 3, 5))).all()  # a batch of one trains
    with pytest.raises(ValueError, match="raise the model's text_len"):
        norm(torch.randn(1, 7, 2))


def test_align_steps_identity_repetition_and_averaging():
    x = torch.arange(8.0).view(1, 4, 2)
    same = torch.ones(1, 4, dtype=torch.bool)
    assert torch.equal(align_steps(x, same, same), x)
    # 4 source steps onto 2 target steps: means of pairs; padding of the target stays zero
    target = torch.tensor([[True, True, False]])
    y = align_steps(x, same, target)
    assert torch.equal(y[0, :2], torch.stack([x[0, :2].mean(0), x[0, 2:].mean(0)])) and (y[0, 2] == 0).all()
    # 2 valid source steps (one padded) onto 4: each repeated
    src_mask = torch.tensor([[True, True, False, False]])
    y = align_steps(x, src_mask, same)
    assert torch.equal(y[0], x[0, [0, 0, 1, 1]])
    assert (align_steps(x, torch.zeros(1, 4, dtype=torch.bool), same) == 0).all()  # absent source


def test_text_timeline_gives_a_sample_without_text_one_step():
    m = torch.tensor([[True, True, False], [False, False, False]])
    assert text_timeline(m).tolist() == [[True, True, False], [True, False, False]]


def test_lmf_equals_a_tfn_with_the_rank_r_weight_tensor():
    torch.manual_seed(0)
    model = create_model("lmf", "tiny", **DIMS).eval()
    b = synthetic_batch(3, (5, 8, 7), (6, 3, 4), seed=0)
    with torch.no_grad():
        model.fusion_bias.fill_(0.3)
        z_t, z_a, z_v = model.encode(b)
        one = torch.ones(3, 1)
        za, zv, zt = (torch.cat([one, z], 1) for z in (z_a, z_v, z_t))
        # W = sum_i w_i (a_i x v_i x t_i): the full TFN fusion weight, formed explicitly
        W = torch.einsum("r,rA,rV,rT->AVT", model.fusion_weights[0], model.audio_factor[..., 0],
                         model.vision_factor[..., 0], model.text_factor[..., 0])
        expected = torch.einsum("AVT,bA,bV,bT->b", W, za, zv, zt) + 0.3
        assert torch.allclose(model(b).prediction, expected, atol=1e-5)


def test_lmf_parameter_groups_and_frozen_fusion_weights():
    model = create_model("lmf", "tiny", factor_lr=5e-4, **DIMS)
    opt = build_optimizer(model, TrainConfig(lr=2e-3))
    (g0, g1) = opt.param_groups
    assert g0["lr"] == 5e-4 and [p.shape for p in g0["params"]] == [model.audio_factor.shape,
                                                                    model.vision_factor.shape,
                                                                    model.text_factor.shape]
    assert g1["lr"] == 2e-3 and any(p is model.fusion_weights for p in g1["params"])
    frozen = create_model("lmf", "tiny", train_fusion_weights=False, **DIMS)
    names = {n for g in build_optimizer(frozen, TrainConfig()).param_groups for p in g["params"]
             for n, q in frozen.named_parameters() if q is p}
    assert "fusion_weights" not in names and "fusion_bias" not in names and "text_factor" in names
    assert frozen.num_parameters() == model.num_parameters() - frozen.config.rank - 1


def test_mfn_pooled_audio_vision_are_the_means_at_every_step():
    torch.manual_seed(0)
    pooled = create_model("mfn", "tiny", pool_audio_vision=True, **DIMS).eval()
    b = synthetic_batch(3, (5, 8, 7), (6, 3, 4), seed=1)
    # the same batch with audio and vision replaced by their means repeated at every text step
    mean = lambda x, m: (x * m[..., None]).sum(1) / m.sum(1, keepdim=True)  # noqa: E731
    rep = Batch(text=b.text, text_mask=b.text_mask, label=b.label,
                audio=mean(b.audio, b.audio_mask)[:, None].expand(-1, 5, -1), audio_mask=b.text_mask,
                vision=mean(b.vision, b.vision_mask)[:, None].expand(-1, 5, -1), vision_mask=b.text_mask)
    plain = create_model("mfn", "tiny", **DIMS).eval()
    plain.load_state_dict(pooled.state_dict())
    with torch.no_grad():
        assert torch.allclose(pooled(b).prediction, plain(rep).prediction, atol=1e-6)
        assert not torch.allclose(pooled(b).prediction, plain(b).prediction, atol=1e-4)


def test_graph_mfn_dfg_replaces_mfn_attention_and_trains_every_vertex():
    torch.manual_seed(0)
    model = create_model("graph_mfn", "tiny", **DIMS)
    dfg = model.core.fusion
    # three singletons, three pairs, one triple; 19 efficacies: 2 per pair, 6 for the triple, 7 for the output
    assert sorted(dfg.nodes) == ["0_1", "0_1_2", "0_2", "1_2"]
    assert dfg.efficacy[-1].out_features == 19
    assert not any(k.startswith("core.attention") for k in model.state_dict())
    b = synthetic_batch(3, (5, 8, 7), (6, 3, 4), seed=1)
    model.objective(model(b), b).total.backward()
    for name, p in dfg.named_parameters():  # the vertex networks are trained parameters (not in MMSA)
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert dfg.last_efficacies.shape == (3, 19)
    # MFN without the hook keeps its attention and no fusion module
    mfn = create_model("mfn", "tiny", **DIMS)
    assert mfn.core.fusion is None and any(k.startswith("core.attention.") for k in mfn.state_dict())
    assert not any(".fusion." in k for k in mfn.state_dict())


def test_tfn_output_bound():
    torch.manual_seed(0)
    free = create_model("tfn", "tiny", **DIMS).eval()
    bounded = create_model("tfn", "tiny", output_bound=3.0, **DIMS).eval()
    bounded.load_state_dict(free.state_dict())
    b = synthetic_batch(4, (5, 8, 7), (6, 3, 4), seed=2)
    with torch.no_grad():
        assert torch.allclose(bounded(b).prediction, 6 * torch.sigmoid(free(b).prediction) - 3, atol=1e-6)
    with pytest.raises(ValueError, match="output_bound must be >= 0"):
        create_model("tfn", "tiny", output_bound=-1.0, **DIMS)


def test_text_aligned_keeps_aligned_inputs_and_pools_or_aligns_the_others():
    from msa_toolkit.layers import masked_mean, text_aligned

    b = synthetic_batch(3, (5, 8, 7), (6, 3, 4), seed=1)
    timeline = text_timeline(b.text_mask)
    (_, a_aligned, _), mask = text_aligned(b.text, b, pool=False)
    assert torch.equal(mask, timeline) and torch.equal(a_aligned, align_steps(b.audio, b.audio_mask, timeline))
    (_, a_mfm, _), _ = text_aligned(b.text, b)  # MFM: unaligned -> utterance means
    assert torch.allclose(a_mfm, masked_mean(b.audio, b.audio_mask)[:, None].expand(-1, 5, -1))
    same = Batch(text=b.text, text_mask=b.text_mask, label=b.label, audio=b.text[..., :3], audio_mask=b.text_mask,
                 vision=b.text[..., :4], vision_mask=b.text_mask)
    for pool in (None, False):  # aligned inputs are used as they are
        assert torch.equal(text_aligned(b.text, same, pool=pool)[0][1], b.text[..., :3] * b.text_mask[..., None])
    assert not torch.equal(text_aligned(b.text, same, pool=True)[0][1], b.text[..., :3] * b.text_mask[..., None])
