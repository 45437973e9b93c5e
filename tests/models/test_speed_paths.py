"""The CPU fast paths (issue 17) compute what the general paths compute.

- attention dropout on the CPU: the weights SDPA would compute, times a keep mask from
  ``layers.keep_mask`` and scaled by 1 / (1 - p) (checked against its own draws, values and gradients);
- ``layers.keep_mask`` / ``layers.Dropout`` (NumPy's PCG64 for large CPU masks): the drop rate, the
  values, the gradients, seeding by ``torch.manual_seed``, and ``nn.Dropout`` itself where they defer to it;
- batches without padding: the masks are dropped (``layers.unpadded``) and the results equal
  the masked computation with a mask of ones (forward and gradients, fp32, 1e-6);
- ALMT's token embedding runs its last layer on the token rows only: equal to the full layer;
- narrow heads multiply attention weights by values transposed (``layers._NarrowValues``): equal to
  ``w @ v``, gradients too.
"""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.data.batch import Batch
from msa_toolkit.models import create_model, layers
from msa_toolkit.models.almt import TokenEmbedding
from msa_toolkit.models.layers import FAST_DRAW_MIN_NUMEL, Dropout, attend, keep_mask, unpadded

TOL = dict(atol=1e-6, rtol=1e-6)


def test_unpadded_drops_only_a_full_cpu_mask():
    full, padded = torch.ones(2, 3, dtype=torch.bool), torch.tensor([[True, True, False], [True] * 3])
    assert unpadded(full) is None and unpadded(None) is None
    assert unpadded(padded) is padded


@pytest.mark.parametrize("L", [7, 80])  # a mask drawn by torch (294 weights) and by NumPy (38,400)
@pytest.mark.parametrize("padded", [False, True])
def test_cpu_attention_dropout_is_the_weights_times_its_keep_mask(padded, L):
    torch.manual_seed(0)
    B, H, Dh, p = 3, 2, 4, 0.3
    q, k, v = (torch.randn(B, L, H * Dh, requires_grad=True) for _ in range(3))
    mask = torch.ones(B, L, dtype=torch.bool)
    if padded:
        mask[0, 4:] = False
    torch.manual_seed(7)
    out = attend(q, k, v, H, mask, dropout_p=p)
    g = torch.randn_like(out)
    grads = torch.autograd.grad((out * g).sum(), (q, k, v))

    split = lambda x: x.view(B, L, H, Dh).transpose(1, 2)  # noqa: E731
    scores = split(q) @ split(k).transpose(-1, -2) / Dh ** 0.5
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    torch.manual_seed(7)  # the same draw as attend's
    keep = keep_mask(weights.shape, p, torch.float32, "cpu")
    assert (weights.numel() >= FAST_DRAW_MIN_NUMEL) == (L == 80)
    expected = ((weights * keep / (1 - p)) @ split(v)).transpose(1, 2).reshape(B, L, H * Dh)
    torch.testing.assert_close(out, expected, **TOL)
    for got, want in zip(grads, torch.autograd.grad((expected * g).sum(), (q, k, v))):
        torch.testing.assert_close(got, want, **TOL)
    assert abs((keep == 0).float().mean().item() - p) < 0.1


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
@pytest.mark.parametrize("path", ["numpy", "torch"])
def test_keep_mask_drops_at_rate_p_with_independent_seeded_draws(path, p):
    n = 2_000_000
    shape = (n // 40, 40) if path == "numpy" else (100, 40)  # 4,000 entries: under FAST_DRAW_MIN_NUMEL
    calls = 1 if path == "numpy" else n // 4000
    torch.manual_seed(0)
    masks = [keep_mask(shape, p, torch.float32, "cpu", scale=1 / (1 - p)) for _ in range(calls)]
    m = torch.cat([x.reshape(-1) for x in masks])
    values = m.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - p))
    rate = (m == 0).double().mean().item()
    assert abs(rate - p) < 4 * (p * (1 - p) / n) ** 0.5
    # the same seed gives the same mask; the next call another one (fresh draws)
    torch.manual_seed(0)
    again = keep_mask(shape, p, torch.float32, "cpu", scale=1 / (1 - p))
    assert torch.equal(again, masks[0])
    nxt = keep_mask(shape, p, torch.float32, "cpu")
    assert not torch.equal(nxt, again * (1 - p))
    # no dependence between neighbouring entries: the rate of "both dropped" is p^2
    a = keep_mask((n,), p, torch.float32, "cpu") == 0
    both = (a[1:] & a[:-1]).double().mean().item()
    assert abs(both - p * p) < 4 * (p * p * (1 - p * p) / n) ** 0.5


def test_dropout_module_values_and_gradients():
    p = 0.25
    d = Dropout(p)
    assert isinstance(d, torch.nn.Dropout) and repr(d) == repr(torch.nn.Dropout(p))
    x = torch.randn(64, 50, 30, requires_grad=True)  # 96,000 entries: the NumPy draw
    torch.manual_seed(3)
    y = d(x)
    torch.manual_seed(3)
    keep = keep_mask(x.shape, p, x.dtype, x.device, scale=1 / (1 - p))
    torch.testing.assert_close(y, x * keep, rtol=0, atol=0)
    (g,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(g, keep, rtol=0, atol=0)
    assert abs((keep == 0).float().mean().item() - p) < 0.01
    d.eval()
    assert d(x) is x


@pytest.mark.parametrize("p, shape, inplace", [(0.3, (4, 10), False), (0.0, (64, 500), False),
                                               (1.0, (64, 500), False), (0.3, (64, 500), True)])
def test_dropout_module_is_nn_dropout_where_it_defers(p, shape, inplace):
    """Small inputs, p of 0 or 1 and in-place dropout: exactly nn.Dropout (the same draws)."""
    x = torch.randn(shape)
    torch.manual_seed(5)
    got = Dropout(p, inplace=inplace)(x.clone())
    torch.manual_seed(5)
    want = torch.nn.Dropout(p, inplace=inplace)(x.clone())
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def _batch(B: int, lengths: tuple[int, int, int], dims: tuple[int, int, int]) -> Batch:
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(B, L, D, generator=g) for m, L, D in zip(("text", "audio", "vision"), lengths, dims)}
    masks = {f"{m}_mask": torch.ones(B, L, dtype=torch.bool) for m, L in zip(x, lengths)}
    return Batch(label=torch.empty(B).uniform_(-3, 3, generator=g), **x, **masks)


@pytest.mark.parametrize("name,kwargs", [
    ("dlf", dict(attn_dropout=0.0, attn_dropout_audio=0.0, embed_dropout=0.0, out_dropout=0.0, text_dropout=0.0)),
    ("almt", {}),
])
def test_unpadded_batches_take_the_mask_free_path_with_the_same_results(monkeypatch, step_check, name, kwargs):
    forward_backward, assert_same_step = step_check
    lengths = (12, 15, 18)
    torch.manual_seed(0)
    model = create_model(name, "tiny", text_len=lengths[0], audio_len=lengths[1], vision_len=lengths[2], **kwargs)
    model.train()
    batch = _batch(4, lengths, (model.config.text_dim, model.config.audio_dim, model.config.vision_dim))
    fast = forward_backward(model, batch)
    keep = lambda mask: mask  # noqa: E731 -- the general path: masks of ones are applied
    monkeypatch.setattr(layers, "unpadded", keep)
    monkeypatch.setattr(f"msa_toolkit.models.{name}.unpadded", keep)
    slow = forward_backward(model, batch)
    assert_same_step(fast, slow)


@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.parametrize("padded", [False, True])
def test_almt_token_embedding_computes_only_the_token_rows_of_its_last_layer(depth, padded):
    torch.manual_seed(0)
    emb = TokenEmbedding(max_len=20, token_len=3, dim=16, depth=depth, heads=2, dim_head=8, mlp_dim=24)
    x = torch.randn(4, 20, 16, requires_grad=True)
    mask = torch.ones(4, 20, dtype=torch.bool)
    if padded:
        mask[1, 9:] = False
        mask[2, 1:] = False

    def full_rows(x):  # the former forward: every layer on every row, then the token rows
        h = torch.cat([emb.tokens.unsqueeze(0).expand(4, -1, -1), x], dim=1)
        h = h + emb.pos(h)
        key_mask = torch.cat([mask.new_ones(4, 3), mask], dim=1)
        for blk in emb.blocks:
            h = blk(h, key_mask=key_mask)
        return h[:, :3]

    got, want = emb(x, mask), full_rows(x)
    torch.testing.assert_close(got, want, **TOL)
    g = torch.randn_like(got)
    params = [x, *emb.parameters()]
    for a, b in zip(torch.autograd.grad((got * g).sum(), params), torch.autograd.grad((want * g).sum(), params)):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("padded", [False, True])
def test_cpu_math_path_over_few_keys_equals_sdpa(padded):
    import torch.nn.functional as F

    torch.manual_seed(0)
    B, H, Dh = 3, 2, 4
    lk = layers.MATH_PATH_MAX_KEYS  # the longest key sequence that takes the math path
    q, k, v = (torch.randn(B, n, H * Dh, requires_grad=True) for n in (5, lk, lk))
    mask = torch.ones(B, lk, dtype=torch.bool)
    if padded:
        mask[0, 9:] = False
        mask[1] = False  # no valid key: zeros
    split = lambda x: x.view(B, x.shape[1], H, Dh).transpose(1, 2)  # noqa: E731
    has_key = mask.any(1)
    sdpa = F.scaled_dot_product_attention(split(q), split(k), split(v),
                                          attn_mask=(mask | ~has_key[:, None])[:, None, None, :])
    sdpa = sdpa.transpose(1, 2).reshape(B, 5, H * Dh) * has_key[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(attend(q, k, v, H, mask), sdpa.detach(), **TOL)
    got = attend(q, k, v, H, mask)
    torch.testing.assert_close(got, sdpa, **TOL)
    g = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad((got * g).sum(), (q, k, v)), torch.autograd.grad((sdpa * g).sum(), (q, k, v))):
        torch.testing.assert_close(a, b, **TOL)
    if padded:
        assert not got[1].any()


@pytest.mark.parametrize("padded", [False, True])
def test_dlf_shared_encoder_stacks_aligned_modalities_with_the_same_results(padded):
    torch.manual_seed(0)
    model = create_model("dlf", "tiny", attn_dropout=0.0, attn_dropout_audio=0.0, embed_dropout=0.0)
    model.train()
    d, L = model.config.dim, 9
    proj = {m: torch.randn(3, L, d, requires_grad=True) for m in ("text", "audio", "vision")}
    mask = {m: None for m in proj}
    if padded:
        mask["audio"] = torch.tensor([[True] * L, [True] * 4 + [False] * (L - 4), [True] * L])
    stacked = model._shared(proj, mask)
    apart = {m: model.shared_encoder(proj[m], mask[m]) for m in proj}
    g = {m: torch.randn_like(v) for m, v in apart.items()}
    params = [*proj.values(), *model.shared_encoder.parameters()]
    grads = [torch.autograd.grad(sum((out[m] * g[m]).sum() for m in proj), params) for out in (stacked, apart)]
    for m in proj:
        torch.testing.assert_close(stacked[m], apart[m], **TOL)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize("Dh", [4, 16, 32])  # narrow heads take layers._NarrowValues, Dh 32 the plain matmul
def test_attention_values_product_equals_matmul_in_both_orientations(monkeypatch, Dh):
    calls = []
    apply = layers._NarrowValues.apply
    monkeypatch.setattr(layers._NarrowValues, "apply", lambda *a: calls.append(1) or apply(*a))
    torch.manual_seed(0)
    w = torch.softmax(torch.randn(3, 2, 7, 9), dim=-1).requires_grad_()
    v = torch.randn(3, 2, 9, Dh, requires_grad=True)
    out = layers._weigh_values(w, v)
    assert bool(calls) == (Dh <= layers.NARROW_HEAD_MAX) and out.shape == (3, 2, 7, Dh)
    g = torch.randn_like(out)
    want = w @ v
    torch.testing.assert_close(out, want, **TOL)
    for got, exp in zip(torch.autograd.grad((out * g).sum(), (w, v)), torch.autograd.grad((want * g).sum(), (w, v))):
        torch.testing.assert_close(got, exp, **TOL)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 mixed precision: bf16 GEMMs, as matmul's
        low = layers._weigh_values(w, v)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), want, atol=2e-2, rtol=2e-2)


def test_keep_mask_numpy_draw_is_pcg64_from_a_torch_seed_compared_and_scaled_in_float32():
    """The large-mask draw: one int64 from torch's generator seeds PCG64; an entry is ``scale`` where the
    float32 uniform is >= p. Pinned, so a change of how the mask is computed keeps seeded runs' masks."""
    import numpy as np

    shape, p, scale = (64, 300), 0.3, 1 / 0.7
    torch.manual_seed(5)
    got = keep_mask(shape, p, torch.float32, "cpu", scale=scale)
    torch.manual_seed(5)
    seed = int(torch.randint(0, 2 ** 62, (), dtype=torch.int64))
    u = torch.from_numpy(np.random.Generator(np.random.PCG64(seed)).random(64 * 300, dtype=np.float32))
    assert got.dtype == torch.float32 and torch.equal(got, ((u >= p) * scale).view(shape))
    torch.manual_seed(5)
    half = keep_mask(shape, p, torch.bfloat16, "cpu", scale=scale)
    assert half.dtype == torch.bfloat16 and torch.equal(half, got.to(torch.bfloat16))


@pytest.mark.parametrize("name,width,limit", [("dlf", lambda c: c.dim, "dlf.ONE_THREAD_MAX_NUMEL"),
                                              ("mult", lambda c: 2 * c.dim, "baselines.MULT_ONE_THREAD_MAX_NUMEL")])
def test_small_cpu_batches_prefer_one_thread_and_predict_runs_on_it(monkeypatch, name, width, limit):
    """DLF and MulT ask for one intra-op thread on batches whose widest [B, L, width] activation is at most
    their limit; ``predict`` (the base class's for MulT) then runs on one thread and restores the count."""
    import importlib

    model = create_model(name, "tiny", text_len=6, audio_len=9, vision_len=7).eval()
    c = model.config
    batch = _batch(4, (6, 9, 7), (c.text_dim, c.audio_dim, c.vision_dim))
    module, attr = limit.split(".")
    mod = importlib.import_module(f"msa_toolkit.models.{module}")
    numel = 4 * 9 * width(c)
    monkeypatch.setattr(mod, attr, numel)
    assert model.prefers_one_thread(batch)
    seen = []
    model.register_forward_pre_hook(lambda *a: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with torch.no_grad():
            want = model(batch).prediction
            got = model.predict(batch)
        monkeypatch.setattr(mod, attr, numel - 1)
        assert not model.prefers_one_thread(batch)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(got, want, **TOL)
    # DLF's predict runs its own path, not the module's __call__ (its threads: tests/models/test_dlf.py)
    assert seen == ([2, 1] if name == "mult" else [2])
    model.text_encoder = torch.nn.Identity()  # a fine-tuned text encoder wants every thread
    monkeypatch.setattr(mod, attr, 10 ** 9)
    assert not model.prefers_one_thread(batch)


def test_the_environment_can_turn_the_one_thread_rule_off(monkeypatch):
    """``MSA_ONE_THREAD_RULE=0``: a batch the rule would put on one thread keeps the caller's threads (for a CPU
    where the second thread pays); read per call; other values leave the rule on."""
    from msa_toolkit.models import dlf
    from msa_toolkit.models.base import ONE_THREAD_ENV

    model = create_model("dlf", "tiny", text_len=6, audio_len=9, vision_len=7).eval()
    c = model.config
    batch = _batch(4, (6, 9, 7), (c.text_dim, c.audio_dim, c.vision_dim))
    monkeypatch.setattr(dlf, "ONE_THREAD_MAX_NUMEL", 10 ** 9)
    monkeypatch.delenv(ONE_THREAD_ENV, raising=False)
    assert model.prefers_one_thread(batch)
    monkeypatch.setenv(ONE_THREAD_ENV, "1")
    assert model.prefers_one_thread(batch)
    monkeypatch.setenv(ONE_THREAD_ENV, "0")
    assert not model.prefers_one_thread(batch)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    seen = []
    monkeypatch.setattr(type(model), "_predict", lambda self, b: seen.append(torch.get_num_threads()) or b.label)
    try:
        with torch.no_grad():
            model.predict(batch)
        monkeypatch.delenv(ONE_THREAD_ENV)
        with torch.no_grad():
            model.predict(batch)
    finally:
        torch.set_num_threads(before)
    assert seen == [2, 1]


@pytest.mark.parametrize("dh,grad,fused", [(64, False, True), (64, True, False), (4, False, False)])
def test_few_keys_take_the_fused_kernel_only_without_gradients_and_for_wide_heads(monkeypatch, dh, grad, fused):
    """Over at most MATH_PATH_MAX_KEYS keys the CPU math path is used, except without gradients for heads of
    at least FUSED_NO_GRAD_MIN_HEAD: then SDPA's fused kernel, with the same values."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    B, H, lk = 3, 2, 10
    assert lk <= layers.MATH_PATH_MAX_KEYS and layers.FUSED_NO_GRAD_MIN_HEAD == 64
    q, k, v = (torch.randn(B, n, H * dh, requires_grad=grad) for n in (5, lk, lk))
    mask = torch.ones(B, lk, dtype=torch.bool)
    mask[0, 7:] = False
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda *a, **kw: calls.append(1) or sdpa(*a, **kw))
    with torch.set_grad_enabled(grad):
        got = attend(q, k, v, H, mask)
    assert len(calls) == (1 if fused else 0)
    monkeypatch.setattr(layers, "FUSED_NO_GRAD_MIN_HEAD", 10 ** 9)  # the math path for every width
    with torch.no_grad():
        torch.testing.assert_close(got.detach(), attend(q, k, v, H, mask), **TOL)
