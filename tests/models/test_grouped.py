"""Grouped execution (``models/grouped.py``) computes what the per-module calls compute.

- at dropout 0, :func:`run_grouped` on CrossModalTransformers (self and cross) and EncoderLayers gives the
  outputs and the gradients (inputs and every parameter) of calling each module, on padded and unpadded
  batches and with a mask missing for some members: fp64 within 1e-12, fp32 within 1e-6 of each tensor's
  scale (max(1, max |x|): the grouped LayerNorm and bias gradients sum the same terms in another order,
  a few ulp on gradients of size ~10);
- calls that differ in shape or structure run in their own groups (and a group of one is the module itself);
- unequal attention dropout rates in a group drop each member at its rate;
- grouping is off unless the device type is in ``GROUPED_DEVICES`` (empty by default; the tests turn it on);
- DLF and MMCL: forward and backward with grouping on equal those with it off (the per-module path).
"""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.data.batch import Batch
from msa_toolkit.models import create_model, grouped
from msa_toolkit.models.grouped import run_grouped
from msa_toolkit.models.layers import CrossModalTransformer, EncoderLayer

TOL = dict(atol=1e-6, rtol=1e-6)
#: tolerance by dtype, relative to a tensor's scale max(1, max |x|) (module docstring)
SCALED_TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


@pytest.fixture(autouse=True)
def grouping_on(monkeypatch):
    monkeypatch.setattr(grouped, "GROUPED_DEVICES", frozenset({"cpu"}))


def one_by_one(modules, inputs, masks, sources=None, source_masks=None):
    """The reference: each module's own forward."""
    n = len(modules)
    sources, source_masks = sources or [None] * n, source_masks or [None] * n
    return [m(x, k) if isinstance(m, EncoderLayer) else m(x, k, s, sk)
            for m, x, k, s, sk in zip(modules, inputs, masks, sources, source_masks)]


def _masks(B: int, L: int, how: str, G: int) -> list[torch.Tensor | None]:
    if how == "none":
        return [None] * G
    out = []
    for g in range(G):
        mask = torch.ones(B, L, dtype=torch.bool)
        mask[0, L - 2 - g:] = False
        mask[B - 1, 1:] = False
        out.append(mask)
    if how == "some":
        out[1] = None
    if how == "absent":  # a sample with no valid step
        out[0][1] = False
    return out


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    tol = SCALED_TOL[want.dtype] * max(1.0, want.abs().max().item())
    torch.testing.assert_close(got, want, atol=tol, rtol=SCALED_TOL[want.dtype])


def _compare(modules, fn_args, params):
    """Outputs and gradients (inputs, parameters) of run_grouped vs one_by_one."""
    results = []
    for fn in (run_grouped, one_by_one):
        inputs = [x.detach().clone().requires_grad_() for x in fn_args["inputs"]]
        sources = None if fn_args.get("sources") is None else \
            [s.detach().clone().requires_grad_() for s in fn_args["sources"]]
        outs = fn(modules, inputs, fn_args["masks"], sources, fn_args.get("source_masks"))
        g = torch.Generator().manual_seed(5)
        loss = sum((o * torch.randn(o.shape, generator=g, dtype=o.dtype)).sum() for o in outs)
        leaves = inputs + (sources or []) + params
        results.append((outs, torch.autograd.grad(loss, leaves, allow_unused=True)))
    (got, got_g), (want, want_g) = results
    for a, b in zip(got, want):
        _close(a, b)
    for a, b in zip(got_g, want_g):
        assert (a is None) == (b is None)
        if a is not None:
            _close(a, b)


def _cmt(cross: bool, attn_dropout: float = 0.0, layers: int = 2) -> CrossModalTransformer:
    return CrossModalTransformer(20, 4, layers, cross=cross, dropout=0.0, attn_dropout=attn_dropout, ff_dropout=0.0,
                                 embed_dropout=0.0).train()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("how", ["none", "all", "some", "absent"])
@pytest.mark.parametrize("cross", [False, True])
def test_grouped_cross_modal_transformers_equal_the_per_module_calls(how, cross, dtype):
    torch.manual_seed(0)
    G, B, Lt, Ls = 3, 4, 7, 9
    modules = [_cmt(cross).to(dtype) for _ in range(G)]
    args = dict(inputs=[torch.randn(B, Lt, 20, dtype=dtype) for _ in range(G)], masks=_masks(B, Lt, how, G))
    if cross:
        args.update(sources=[torch.randn(B, Ls, 20, dtype=dtype) for _ in range(G)],
                    source_masks=_masks(B, Ls, how, G))
    _compare(modules, args, [p for m in modules for p in m.parameters()])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("how", ["none", "all", "absent"])
def test_grouped_encoder_layers_equal_the_per_module_calls(how, norm_first, dtype):
    torch.manual_seed(0)
    G, B, L = 3, 5, 6
    modules = [EncoderLayer(16, 4, 32, dropout=0.0, norm_first=norm_first).train().to(dtype) for _ in range(G)]
    masks = _masks(B, L, how, G)
    masks = [torch.ones(B, L, dtype=torch.bool) if k is None else k for k in masks]  # EncoderLayer needs one
    _compare(modules, dict(inputs=[torch.randn(B, L, 16, dtype=dtype) for _ in range(G)], masks=masks),
             [p for m in modules for p in m.parameters()])


def test_calls_that_differ_run_in_their_own_groups(monkeypatch):
    torch.manual_seed(0)
    B = 3
    # 0 and 2 group; 1 has another length; 3 another depth; 4 another residual dropout
    modules = [_cmt(False), _cmt(False), _cmt(False), _cmt(False, layers=1), _cmt(False)]
    modules[4].blocks[0].drop.p = 0.5
    modules[4].eval()  # and not in training: a structure difference too
    inputs = [torch.randn(B, 7, 20), torch.randn(B, 8, 20), torch.randn(B, 7, 20), torch.randn(B, 7, 20),
              torch.randn(B, 7, 20)]
    sizes = []
    real = grouped._cross_modal
    monkeypatch.setattr(grouped, "_cross_modal", lambda group, *a: sizes.append(len(group)) or real(group, *a))
    got = run_grouped(modules, inputs, [None] * 5)
    assert sizes == [2]
    for a, b in zip(got, one_by_one(modules, inputs, [None] * 5)):
        torch.testing.assert_close(a, b, **TOL)
    # attention dropout alone may differ
    assert grouped.structure(_cmt(False, 0.3)) == grouped.structure(_cmt(False, 0.0))
    assert grouped.structure(_cmt(False)) != grouped.structure(_cmt(True))


def test_unequal_group_rates_drop_each_group_at_its_rate():
    torch.manual_seed(0)
    G, B, H, L, Dh = 3, 8, 2, 40, 1
    rates = (0.5, 0.0, 0.2)
    # v = 1 and uniform weights: each output is (kept keys / L) / (1 - p); its mean estimates 1
    q = torch.zeros(G, B, L, H * Dh)
    v = torch.ones(G, B, L, H * Dh)
    torch.manual_seed(1)
    out = grouped._attend(q, q, v, H, None, rates).reshape(G, -1)
    torch.testing.assert_close(out[1], torch.ones_like(out[1]), **TOL)  # the p = 0 group is not dropped
    for g, p in enumerate(rates):
        kept = out[g] * (1 - p)  # the fraction of keys kept per row
        assert abs(kept.mean().item() - (1 - p)) < 0.03, (g, p, kept.mean().item())


def _batch(B: int, L: int, dims: tuple[int, int, int], padded: bool) -> Batch:
    g = torch.Generator().manual_seed(1)
    x = {m: torch.randn(B, L, D, generator=g) for m, D in zip(("text", "audio", "vision"), dims)}
    masks = {}
    for m in x:
        mask = torch.ones(B, L, dtype=torch.bool)
        if padded:
            mask[0, L // 2:] = False
            mask[2, L - 2:] = False
        masks[f"{m}_mask"] = mask
    return Batch(label=torch.empty(B).uniform_(-3, 3, generator=g), **x, **masks)


@pytest.mark.parametrize("padded", [False, True])
@pytest.mark.parametrize("name,kwargs", [
    ("dlf", dict(layers=2, mem_layers=2, attn_dropout=0.0, attn_dropout_audio=0.0, embed_dropout=0.0,
                 out_dropout=0.0, text_dropout=0.0)),
    ("mmcl", dict(attn_dropout=0.0, dropout=0.0)),
])
def test_models_equal_their_per_module_path(monkeypatch, step_check, name, kwargs, padded):
    forward_backward, assert_same_step = step_check
    L = 12
    torch.manual_seed(0)
    model = create_model(name, "tiny", text_len=L, audio_len=L, vision_len=L, **kwargs).train()
    batch = _batch(4, L, (model.config.text_dim, model.config.audio_dim, model.config.vision_dim), padded)
    sizes = []
    real = grouped._cross_modal if name == "dlf" else grouped._encoder_layer
    monkeypatch.setattr(grouped, real.__name__, lambda group, *a: sizes.append(len(group)) or real(group, *a))
    fast = forward_backward(model, batch)
    assert sizes == ([6, 4, 2, 2] if name == "dlf" else [6])  # L->L (depth `layers`) joins the re-encodings
    monkeypatch.setattr(grouped, "GROUPED_DEVICES", frozenset())  # off: DLF's former call order, MMCL one by one
    slow = forward_backward(model, batch)
    assert len(sizes) == (4 if name == "dlf" else 1)
    assert_same_step(fast, slow)


def test_grouping_is_off_by_default_on_the_cpu(monkeypatch):
    monkeypatch.setattr(grouped, "GROUPED_DEVICES", frozenset())
    torch.manual_seed(0)
    modules = [_cmt(False) for _ in range(3)]
    inputs = [torch.randn(2, 5, 20) for _ in range(3)]
    monkeypatch.setattr(grouped, "_cross_modal", lambda *a: pytest.fail("grouped although off"))
    for a, b in zip(run_grouped(modules, inputs, [None] * 3), one_by_one(modules, inputs, [None] * 3)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("on", [False, True])
def test_other_modules_are_called_with_input_and_mask_only(monkeypatch, on):
    """As the MMCL parity script's stand-in blocks are (a regression: they were given four arguments)."""
    monkeypatch.setattr(grouped, "GROUPED_DEVICES", frozenset({"cpu"} if on else ()))

    class TwoArgs(torch.nn.Module):
        def forward(self, x, mask):
            return x * 2

    x = torch.randn(2, 3, 4)
    got = run_grouped([TwoArgs(), TwoArgs()], [x, x], [None, None])
    assert all(torch.equal(g, x * 2) for g in got)


@pytest.mark.parametrize("how", ["all", "absent"])
def test_runs_of_unequal_rates_keep_each_members_key_mask(how):
    """Three runs (rates 0, 1e-9, 0: a 1e-9 rate keeps every weight here, and scales by 1 in fp32) equal one call."""
    torch.manual_seed(0)
    G, B, L, H = 3, 4, 6, 2
    q, k, v = (torch.randn(G, B, L, 8) for _ in range(3))
    key_mask = torch.cat(_masks(B, L, how, G))
    split = grouped._attend(q, k, v, H, key_mask, (0.0, 1e-9, 0.0))
    whole = grouped._attend(q, k, v, H, key_mask, (0.0, 0.0, 0.0))
    torch.testing.assert_close(split, whole, **TOL)
    assert not torch.equal(whole, grouped._attend(q, k, v, H, None, (0.0,) * 3))  # the mask matters here


def test_environment_turns_grouping_on_per_device_type():
    """MSA_GROUPED_DEVICES (read at import) lists the device types grouping is on for; unset = off."""
    import os
    import subprocess
    import sys

    code = "from msa_toolkit.models import grouped as g; print(sorted(g.GROUPED_DEVICES))"
    env = {k: v for k, v in os.environ.items() if k != grouped.GROUPED_ENV}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    env[grouped.GROUPED_ENV] = " cuda, cpu ,"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['cpu', 'cuda']"
