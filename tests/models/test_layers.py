"""Shared blocks: masking, NaN-safety for absent modalities, shapes, gradient reversal, text encoder."""

from __future__ import annotations

import math

import pytest
import torch

from msa_toolkit.layers import (CrossModalTransformer, LearnedPositionalEncoding, MultiHeadAttention,
    SinusoidalPositionalEncoding, TransformerBlock, last_valid, masked_mean, sinusoidal_table)
from msa_toolkit.layers.heads import ConvProjection, MLPHead, grad_reverse, GradientReversal
from msa_toolkit.layers.text_encoder import TextEncoder, text_features


def test_masked_mean_and_last_valid():
    x = torch.arange(12.0).view(2, 3, 2)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    m = masked_mean(x, mask)
    assert torch.allclose(m[0], torch.tensor([1.0, 2.0]))
    assert torch.equal(m[1], torch.zeros(2))
    holes = torch.tensor([[True, False, True], [False, True, False]])
    lv = last_valid(x, holes)
    assert torch.equal(lv[0], x[0, 2]) and torch.equal(lv[1], x[1, 1])
    assert torch.equal(last_valid(x, mask)[1], torch.zeros(2))


def test_attention_ignores_padding_and_is_safe_without_keys():
    torch.manual_seed(0)
    attn = MultiHeadAttention(8, 2)
    q, k = torch.randn(2, 4, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, False, False, False], [False] * 5])
    out = attn(q, k, k, mask)
    assert torch.isfinite(out).all()
    assert torch.equal(out[1], torch.zeros(4, 8))  # no valid key -> zero update
    k2 = k.clone()
    k2[0, 2:] = 100.0  # padded keys must not matter
    assert torch.allclose(attn(q, k2, k2, mask)[0], out[0], atol=1e-6)
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in attn.parameters())


def test_cross_modal_transformer_shapes_and_absent_source():
    torch.manual_seed(0)
    tf = CrossModalTransformer(8, 2, 2, cross=True).eval()
    x, src = torch.randn(3, 4, 8), torch.zeros(3, 1, 8)
    out = tf(x, torch.ones(3, 4, dtype=torch.bool), src, torch.zeros(3, 1, dtype=torch.bool))
    assert out.shape == (3, 4, 8) and torch.isfinite(out).all()
    self_tf = CrossModalTransformer(8, 2, 1, cross=False)
    assert self_tf(x, torch.ones(3, 4, dtype=torch.bool)).shape == (3, 4, 8)
    with pytest.raises(ValueError):
        TransformerBlock(8, 2, cross=True)(x)


def test_conv_projection_keeps_length_and_zeroes_padding():
    conv = ConvProjection(5, 8, kernel_size=5)
    x = torch.randn(2, 1, 5)
    assert conv(x).shape == (2, 1, 8)
    x = torch.randn(2, 6, 5)
    mask = torch.arange(6)[None] < torch.tensor([[6], [3]])
    y = conv(x, mask)
    assert y.shape == (2, 6, 8) and torch.equal(y[1, 3:], torch.zeros(3, 8))
    x2 = x.clone()
    x2[1, 3:] = 50.0  # padding content must not leak into valid steps
    assert torch.allclose(conv(x2, mask), y)


def test_positional_encodings():
    x = torch.zeros(1, 7, 6)
    pe = SinusoidalPositionalEncoding(6)(x)
    assert pe.shape == (7, 6) and torch.allclose(pe[0, 1::2], torch.ones(3))
    lp = LearnedPositionalEncoding(5, 6)
    assert lp(x[:, :5]).shape == (5, 6)
    with pytest.raises(ValueError, match="exceeds"):
        lp(x)


def test_sinusoidal_tables_are_kept_per_length_and_serve_autograd_after_inference_mode():
    pe = SinusoidalPositionalEncoding(6, "fairseq")
    with torch.inference_mode():  # first built while predicting
        first = pe(torch.zeros(2, 5, 6))
    assert torch.equal(first, sinusoidal_table(5, 6, "fairseq")) and not first.is_inference()
    x = torch.randn(3, 5, 6, requires_grad=True)
    y = pe(x)
    assert y is first  # kept, not recomputed
    (x * 2 + y).pow(2).sum().backward()  # a training forward with the kept table
    assert x.grad is not None
    other = pe(torch.zeros(1, 4, 6, dtype=torch.float64))
    assert other.shape == (4, 6) and other.dtype == torch.float64
    assert torch.equal(other, sinusoidal_table(4, 6, "fairseq", dtype=torch.float64))


def test_sinusoidal_positions_keep_one_table_per_device_and_dtype_whatever_the_lengths():
    """A table per length grew with every new length of a length-bucketed run; the longest one serves all."""
    pe = SinusoidalPositionalEncoding(6, "fairseq")
    for L in (5, 3, 9, 4, 9, 1):
        assert torch.equal(pe(torch.zeros(2, L, 6)), sinusoidal_table(L, 6, "fairseq"))
    assert len(pe._tables) == 1 and next(iter(pe._tables.values())).shape == (9, 6)
    x = torch.randn(2, 4, 6, requires_grad=True)
    (x + pe(x)).sum().backward()  # a slice of the kept table serves autograd too
    assert x.grad is not None


def test_fairseq_layout_values_by_hand():
    # dim 6: h = 3, w_i = exp(-i ln(10000) / (h - 1)) = 1, 0.01, 0.0001; row t holds position t + 1
    w = (1.0, 0.01, 0.0001)
    table = sinusoidal_table(4, 6, "fairseq", dtype=torch.float64)
    for t in (0, 2, 3):
        p = t + 1
        expect = [math.sin(p * x) for x in w] + [math.cos(p * x) for x in w]
        assert torch.allclose(table[t], torch.tensor(expect, dtype=torch.float64), atol=1e-6), t
    assert torch.equal(table[:3], sinusoidal_table(4, 6, "halves", dtype=torch.float64)[1:])  # halves from 0
    assert torch.equal(sinusoidal_table(2, 7, "fairseq")[:, 6], torch.zeros(2))  # odd dim: zero last column
    with pytest.raises(ValueError, match="layout"):
        sinusoidal_table(2, 6, "nope")


def test_cross_block_shared_norm_normalises_query_and_context_with_one_module():
    torch.manual_seed(0)
    blk = TransformerBlock(8, 2, cross=True, shared_kv_norm=True).eval()
    assert blk.norm_kv is None and not any(k.startswith("norm_kv") for k in blk.state_dict())
    with torch.no_grad():
        blk.norm_q.weight.uniform_(0.5, 2.0), blk.norm_q.bias.normal_()
    seen = []
    blk.norm_q.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    x, ctx = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    out = blk(x, None, ctx, None)
    assert len(seen) == 2 and seen[0] is x and seen[1] is ctx
    kv = blk.norm_q(ctx)
    h = x + blk.attn(blk.norm_q(x), kv, kv)
    assert torch.allclose(out, h + blk.ff(blk.norm_ff(h)), atol=1e-6)
    # separate norms stay available (earlier layout) and their weights are refused by a shared-norm block
    old = TransformerBlock(8, 2, cross=True, shared_kv_norm=False)
    assert old.norm_kv is not None
    with pytest.raises(RuntimeError, match="shared_kv_norm=False"):
        blk.load_state_dict(old.state_dict())
    assert TransformerBlock(8, 2, cross=True).norm_kv is not None  # block default unchanged


def test_mult_encoders_follow_reference_and_old_checkpoints_keep_their_layout():
    from msa_toolkit.training.checkpoint import _config_values

    tf = CrossModalTransformer(8, 2, 1, cross=True)
    assert tf.pos.layout == "fairseq" and tf.blocks[0].norm_kv is None
    for name in ("dlf", "mult"):  # a stored config without the new fields was trained with the old layout
        assert _config_values(name, {}) == {"positions": "interleaved", "shared_kv_norm": False}
        assert _config_values(name, {"positions": "fairseq", "shared_kv_norm": True})["shared_kv_norm"] is True


def test_grad_reverse():
    x = torch.ones(3, requires_grad=True)
    (2 * grad_reverse(x, 0.5)).sum().backward()
    assert torch.allclose(x.grad, torch.full((3,), -1.0))
    x.grad = None
    GradientReversal(1.0)(x).sum().backward()
    assert torch.allclose(x.grad, -torch.ones(3))


def test_gradient_reversal_flips_and_scales():
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    (grad_reverse(x, 0.7) * w).sum().backward()
    assert torch.allclose(x.grad, -0.7 * w)
    y = torch.randn(2, requires_grad=True)
    assert torch.equal(grad_reverse(y, 2.0), y)  # identity forward


def test_last_valid_step_pooling():
    x = torch.arange(12.0).view(2, 6, 1)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    assert last_valid(x, mask)[:, 0].tolist() == [2.0, 0.0]


def test_mlp_head():
    assert MLPHead(4, 8, 2, layers=3)(torch.randn(5, 4)).shape == (5, 2)
    assert len(MLPHead(4, 8, 1, layers=1)) == 1


def test_text_encoder_wrapper(tiny_bert):
    from msa_toolkit.data.batch import synthetic_batch

    enc = TextEncoder(tiny_bert)
    assert enc.hidden_size == 16
    b = synthetic_batch(2, (6, 4, 4), (16, 5, 7), with_tokens=True)
    h = text_features(enc, b)
    assert h.shape == (2, 6, 16)
    assert text_features(None, b) is b.text
    h.sum().backward()
    trainable = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert all(not n.startswith("model.pooler") for n in trainable)
    b.text_tokens = None
    with pytest.raises(ValueError, match="text_tokens"):
        text_features(enc, b)


@pytest.mark.parametrize("name", ["text_only", "mult", "dlf", "almt", "mtfn", "tfr_net"])
def test_models_fine_tune_text_encoder(tiny_bert, name):
    from msa_toolkit.data.batch import synthetic_batch
    from msa_toolkit.models import create_model, get_entry, list_models

    if name not in list_models():
        pytest.skip(f"{name} not registered")
    preset = "tiny" if "tiny" in get_entry(name).presets else None
    extra = {"text_unk_id": 1} if name == "tfr_net" else {}  # the tiny vocabulary has no id 100 (BERT's [UNK])
    model = create_model(name, preset=preset, text_encoder=tiny_bert, text_dim=999, audio_dim=5, vision_dim=7,
                         text_len=6, audio_len=4, vision_len=4, **extra)
    b = synthetic_batch(3, (6, 4, 4), (3, 5, 7), with_tokens=True)  # text features are ignored
    out = model(b)
    loss = model.objective(out, b)
    loss.total.backward()
    emb = model.text_encoder.model.embeddings.word_embeddings.weight
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert model.num_parameters() < model.num_parameters(exclude_text_encoder=False)


# --------------------------------------------------------------------------- fused attention (issue 17)


class _SeparateAttention(torch.nn.Module):
    """The former MultiHeadAttention: separate q/k/v Linears, the key mask always passed to SDPA."""

    def __init__(self, dim: int, heads: int, bias: bool = True):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = (torch.nn.Linear(dim, dim, bias=bias) for _ in range(3))
        self.to_out = torch.nn.Linear(dim, dim)

    def forward(self, q, k, v, key_mask=None):
        B, Lq, D = q.shape
        split = lambda x: x.view(B, x.shape[1], self.heads, D // self.heads).transpose(1, 2)  # noqa: E731
        attn_mask, has_key = None, None
        if key_mask is not None:
            has_key = key_mask.any(dim=1)
            attn_mask = (key_mask | ~has_key.unsqueeze(1))[:, None, None, :]
        out = torch.nn.functional.scaled_dot_product_attention(split(self.to_q(q)), split(self.to_k(k)),
                                                               split(self.to_v(v)), attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(B, Lq, D)
        if has_key is not None:
            out = out * has_key[:, None, None].to(out.dtype)
        out = self.to_out(out)
        if key_mask is not None:
            out = out * key_mask.any(dim=1)[:, None, None].to(out.dtype)
        return out


@pytest.mark.parametrize("bias", [True, False])
def test_fused_attention_initialises_like_three_separate_projections(bias):
    torch.manual_seed(3)
    old = _SeparateAttention(8, 2, bias)
    torch.manual_seed(3)
    new = MultiHeadAttention(8, 2, qkv_bias=bias)
    # same RNG draws at construction: the fused weight is the three separate weights stacked
    assert torch.equal(new.qkv.weight, torch.cat([old.to_q.weight, old.to_k.weight, old.to_v.weight]))
    assert set(new.state_dict()) == {"qkv.weight", "to_out.weight", "to_out.bias"} | ({"qkv.bias"} if bias else set())


@pytest.mark.parametrize("mode", ["self", "cross_kv", "separate"])
def test_fused_attention_matches_the_separate_path_without_dropout(mode):
    torch.manual_seed(1)
    old = _SeparateAttention(12, 3)
    new = MultiHeadAttention(12, 3)
    with torch.no_grad():  # the same weights, stacked into the fused projection
        new.qkv.weight.copy_(torch.cat([old.to_q.weight, old.to_k.weight, old.to_v.weight]))
        new.qkv.bias.copy_(torch.cat([old.to_q.bias, old.to_k.bias, old.to_v.bias]))
        new.to_out.load_state_dict(old.to_out.state_dict())
    x, ctx, other = torch.randn(3, 5, 12), torch.randn(3, 7, 12), torch.randn(3, 7, 12)
    q, k, v = {"self": (x, x, x), "cross_kv": (x, ctx, ctx), "separate": (x, ctx, other)}[mode]
    lk = k.shape[1]
    masks = [None, torch.ones(3, lk, dtype=torch.bool),  # no padding: the fast path drops the mask
             torch.tensor([[True] * (lk - 2) + [False] * 2, [False] * lk, [True] * lk])]
    for mask in masks:
        xs = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
        ys = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
        if mode == "self":
            xs, ys = [xs[0]] * 3, [ys[0]] * 3
        elif mode == "cross_kv":
            xs[2], ys[2] = xs[1], ys[1]
        a, b = old(*xs, mask), new(*ys, mask)
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-6)
        g = torch.randn_like(a)
        old.zero_grad(), new.zero_grad()
        (a * g).sum().backward()
        (b * g).sum().backward()
        w_old = torch.cat([old.to_q.weight.grad, old.to_k.weight.grad, old.to_v.weight.grad])
        torch.testing.assert_close(new.qkv.weight.grad, w_old, atol=1e-6, rtol=1e-6)
        b_old = torch.cat([old.to_q.bias.grad, old.to_k.bias.grad, old.to_v.bias.grad])
        torch.testing.assert_close(new.qkv.bias.grad, b_old, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(new.to_out.weight.grad, old.to_out.weight.grad, atol=1e-6, rtol=1e-6)
        for gx, gy in zip(xs, ys):
            torch.testing.assert_close(gy.grad, gx.grad, atol=1e-6, rtol=1e-6)


def test_attention_dropout_drops_at_the_configured_rate_and_keeps_the_mean():
    from msa_toolkit.layers import attend

    torch.manual_seed(0)
    p, n, lk = 0.3, 64, 32
    q, k = torch.randn(n, 4, lk), torch.randn(n, lk, lk)
    v = torch.eye(lk).expand(n, lk, lk)  # one-hot values: the output rows are the attention weights
    for mask in (None, torch.ones(n, lk, dtype=torch.bool)):
        clean = attend(q, k, v, heads=1, key_mask=mask)
        dropped = attend(q, k, v, heads=1, key_mask=mask, dropout_p=p)
        assert (clean > 0).all()
        rate = (dropped == 0).float().mean().item()
        total = dropped.numel()
        assert abs(rate - p) < 4 * (p * (1 - p) / total) ** 0.5, rate
        kept = dropped != 0
        torch.testing.assert_close(dropped[kept], clean[kept] / (1 - p))  # inverted-dropout scaling
        # unbiased: the mean over many draws approaches the clean weights
        mean = torch.stack([attend(q[:4], k[:4], v[:4], 1, None, p) for _ in range(400)]).mean(0)
        assert (mean - clean[:4]).abs().mean() < 0.01


def test_valid_conv_projection_shrinks_by_the_kernel_and_ignores_extra_padding():
    torch.manual_seed(0)
    proj = ConvProjection(3, 4, kernel_size=5, padding="valid")
    x = torch.randn(3, 9, 3)
    mask = torch.tensor([[True] * 9, [True] * 6 + [False] * 3, [True] * 2 + [False] * 7])
    y, m = proj(x, mask), proj.output_mask(mask)
    assert y.shape == (3, 5, 4)
    assert m.sum(1).tolist() == [5, 2, 1]  # n - k + 1 windows, at least one for a short sample
    torch.testing.assert_close(y[0], proj.conv(x[0].T).T)  # full sample: plain convolution
    # more padding changes nothing on the valid windows
    xp = torch.cat([x, torch.randn(3, 4, 3)], dim=1)
    mp = torch.cat([mask, torch.zeros(3, 4, dtype=torch.bool)], dim=1)
    yp, mpp = proj(xp, mp), proj.output_mask(mp)
    assert torch.equal(mpp[:, :5], m) and not mpp[:, 5:].any()
    torch.testing.assert_close(yp[:, :5] * m[..., None], y * m[..., None])
    # shorter than the kernel: one zero-extended window; absent: none
    short = proj(x[:, :2], mask[:, :2])
    assert short.shape == (3, 1, 4) and proj.output_mask(mask[:, :2]).tolist() == [[True], [True], [True]]
    assert not proj.output_mask(torch.zeros(2, 3, dtype=torch.bool)).any()
