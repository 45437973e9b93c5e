"""``models.linear``: large fp32 CPU linears run in oneDNN and compute what ``F.linear`` computes (issue 17)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from msa_toolkit.models import create_model
from msa_toolkit.models import linear as lin
from msa_toolkit.models.linear import ONEDNN_MIN_MACS, Linear, linear

needs_onednn = pytest.mark.skipif(not lin.onednn_linear_available(), reason="this torch build has no oneDNN linear")
TOL = dict(atol=1e-4, rtol=1e-5)


@pytest.fixture
def calls(monkeypatch):
    """Count the oneDNN calls."""
    seen = []
    op = lin._LINEAR_POINTWISE
    monkeypatch.setattr(lin, "_LINEAR_POINTWISE", lambda *a: seen.append(a[0].shape) or op(*a))
    return seen


def _large(shape=(8, 64, 128), out=128):
    assert shape[0] * shape[1] * shape[2] * out >= ONEDNN_MIN_MACS
    g = torch.Generator().manual_seed(0)
    return torch.randn(*shape, generator=g), torch.randn(out, shape[-1], generator=g), torch.randn(out, generator=g)


@needs_onednn
@pytest.mark.parametrize("case", ["plain", "transposed input", "no bias", "weight rows"])
def test_large_products_take_onednn_with_the_same_values_and_gradients(calls, case):
    x, w, b = _large()
    if case == "transposed input":
        x = x.transpose(0, 1).contiguous().transpose(0, 1)  # a non-contiguous view
    if case == "no bias":
        b = None
    if case == "weight rows":  # the fused q/k/v projection's slices
        w = torch.cat([w, w.flip(0)])[64:192]
    x, w = x.requires_grad_(), w.requires_grad_()
    params = [x, w] + ([b.requires_grad_()] if b is not None else [])
    got, want = linear(x, w, b), F.linear(x, w, b)
    assert len(calls) == 1
    torch.testing.assert_close(got, want, **TOL)
    g = torch.randn_like(got)
    for a, e in zip(torch.autograd.grad((got * g).sum(), params), torch.autograd.grad((want * g).sum(), params)):
        torch.testing.assert_close(a, e, **TOL)


@needs_onednn
def test_frozen_weights_give_only_the_input_gradient_and_no_grad_skips_autograd(calls):
    x, w, b = _large()
    x.requires_grad_()
    out = linear(x, w, b)
    assert not w.requires_grad
    (gx,) = torch.autograd.grad(out.sum(), [x])
    torch.testing.assert_close(gx, torch.autograd.grad(F.linear(x, w, b).sum(), [x])[0], **TOL)
    with torch.no_grad():
        assert linear(x, w, b).grad_fn is None
    assert len(calls) == 2


@pytest.mark.parametrize("case", ["small", "narrow", "float64", "bf16 autocast", "1-d input"])
def test_other_products_stay_with_f_linear(calls, case):
    x, w, b = _large()
    if case == "small":
        x = x[:1, :4]
    if case == "narrow":  # enough work, but a 64-wide output (ONEDNN_MIN_WIDTH)
        x, w, b = x.repeat(4, 1, 1), w[:64], b[:64]
        assert x.shape[0] * x.shape[1] * w.numel() >= ONEDNN_MIN_MACS
    if case == "float64":
        x, w, b = x.double(), w.double(), b.double()
    if case == "1-d input":
        x, w = x[0, 0], w.repeat(ONEDNN_MIN_MACS // w.numel() + 1, 1)
        b = None
    if case == "bf16 autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = linear(x, w, b)
        assert out.dtype == torch.bfloat16
    else:
        torch.testing.assert_close(linear(x, w, b), F.linear(x, w, b), atol=0, rtol=0)
    assert calls == []


def test_linear_module_is_an_nn_linear_with_the_same_init_and_state_dict():
    torch.manual_seed(3)
    a = Linear(128, 128)
    torch.manual_seed(3)
    b = nn.Linear(128, 128)
    assert isinstance(a, nn.Linear)
    assert a.state_dict().keys() == b.state_dict().keys()
    for k in a.state_dict():
        assert torch.equal(a.state_dict()[k], b.state_dict()[k])
    x = _large()[0]
    torch.testing.assert_close(a(x), b(x), **TOL)


@needs_onednn
def test_environment_switch_turns_the_path_off():
    code = "from msa_toolkit.models.linear import onednn_linear_available as a; print(a())"
    env = dict(os.environ, MSA_ONEDNN_LINEAR="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@needs_onednn
def test_a_model_predicts_and_learns_the_same_with_the_path_off(monkeypatch, calls):
    torch.manual_seed(0)
    model = create_model("mmcl", "tiny", d_model=128, ff_dim=256, seq_len=12, text_dim=768).eval()
    c = model.config
    g = torch.Generator().manual_seed(1)
    from msa_toolkit.data.batch import Batch
    x = {m: torch.randn(32, 12, d, generator=g) for m, d in
         (("text", c.text_dim), ("audio", c.audio_dim), ("vision", c.vision_dim))}
    batch = Batch(label=torch.linspace(-3, 3, 32), **x,
                  **{f"{m}_mask": torch.ones(32, 12, dtype=torch.bool) for m in x})

    def run():
        out = model(batch)
        return out.prediction, torch.autograd.grad(out.prediction.sum(), list(model.parameters()), allow_unused=True)

    fast = run()
    assert calls, "the model's large linears should take oneDNN"
    monkeypatch.setattr(lin, "ENABLED", False)
    slow = run()
    torch.testing.assert_close(fast[0], slow[0], **TOL)
    for a, b in zip(fast[1], slow[1]):
        if a is not None:
            torch.testing.assert_close(a, b, **TOL)


@pytest.fixture
def attrs(monkeypatch):
    """The post-op (``"none"`` / ``"relu"``) of each oneDNN call."""
    seen = []
    op = lin._LINEAR_POINTWISE
    monkeypatch.setattr(lin, "_LINEAR_POINTWISE", lambda *a: seen.append(a[3]) or op(*a))
    return seen


@needs_onednn
@pytest.mark.parametrize("case", ["plain", "no bias", "frozen weights"])
def test_linear_relu_fuses_the_relu_with_the_same_values_and_gradients(attrs, case):
    x, w, b = _large()
    x = x - x.mean()  # about half the outputs negative: the ReLU's zeros and its gradient's mask both matter
    if case == "no bias":
        b = None
    params = [x.requires_grad_()]
    if case != "frozen weights":
        params += [w.requires_grad_()] + ([b.requires_grad_()] if b is not None else [])
    got, want = lin.linear_relu(x, w, b), F.relu(F.linear(x, w, b))
    assert attrs == ["relu"]
    assert 0.3 < (got == 0).float().mean() < 0.7
    torch.testing.assert_close(got, want, **TOL)
    g = torch.randn_like(got)
    for a, e in zip(torch.autograd.grad((got * g).sum(), params), torch.autograd.grad((want * g).sum(), params)):
        torch.testing.assert_close(a, e, **TOL)
    with torch.no_grad():
        out = lin.linear_relu(x, w, b)
    assert out.grad_fn is None and attrs == ["relu", "relu"]
    torch.testing.assert_close(out, want, **TOL)


@pytest.mark.parametrize("case", ["small", "float64"])
def test_linear_relu_elsewhere_is_relu_of_f_linear(attrs, case):
    x, w, b = _large()
    x = x[:1, :4] if case == "small" else x.double()
    if case == "float64":
        w, b = w.double(), b.double()
    assert torch.equal(lin.linear_relu(x, w, b), F.relu(F.linear(x, w, b)))
    assert attrs == []


@needs_onednn
@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_feed_forward_fuses_only_a_relu_and_computes_what_its_layers_compute(attrs, act):
    from msa_toolkit.models.transformer import FeedForward

    torch.manual_seed(0)
    ff = FeedForward(128, 256, dropout=0.0, act=act)
    x = _large()[0].requires_grad_()
    got = ff(x)
    assert attrs == (["relu", "none"] if act == "relu" else ["none", "none"])
    want = nn.Sequential.forward(ff, x)  # module by module: Linear, activation, Dropout, Linear
    torch.testing.assert_close(got, want, **TOL)
    params = [x] + list(ff.parameters())
    g = torch.randn_like(got)
    for a, e in zip(torch.autograd.grad((got * g).sum(), params), torch.autograd.grad((want * g).sum(), params)):
        torch.testing.assert_close(a, e, **TOL)
