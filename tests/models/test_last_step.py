"""Blocks whose last valid state alone is kept compute their final block for that step only (issue 17).

``CrossModalTransformer.forward_last``, ``TransformerBlock.forward_last`` and ``EncoderLayer.forward_last``
must equal ``last_valid(forward(...))`` (values and gradients, padded rows and samples with no valid step
included), and MInD, DLF and MulT, which use them, must predict what they predicted before.
"""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.data.batch import Batch
from msa_toolkit import layers
from msa_toolkit.models import create_model
from msa_toolkit.layers import CrossModalTransformer, EncoderLayer, last_valid, take_last

TOL = dict(atol=1e-5, rtol=1e-5)
B, L, LS, D = 4, 7, 9, 16


def _mask(kind: str, length: int) -> torch.Tensor | None:
    if kind == "none":
        return None
    mask = torch.ones(B, length, dtype=torch.bool)
    if kind == "padded":
        mask[1, 4:] = False       # right padding
        mask[2] = False           # no valid step at all (absent modality)
        mask[3, [0, 5]] = False   # holes: the last valid index is still taken
    return mask


def _assert_same_with_grads(got: torch.Tensor, want: torch.Tensor, params: list[torch.Tensor]) -> None:
    torch.testing.assert_close(got, want, **TOL)
    g = torch.randn_like(got)
    for a, b in zip(torch.autograd.grad((got * g).sum(), params), torch.autograd.grad((want * g).sum(), params)):
        torch.testing.assert_close(a, b, **TOL)


def test_take_last_gathers_the_largest_valid_index():
    x = torch.arange(B * L, dtype=torch.float).view(B, L, 1)
    mask = _mask("padded", L)
    assert take_last(x, mask)[:, 0, 0].tolist() == [6.0, 10.0, 14.0, 27.0]
    assert take_last(x, None).shape == (B, 1, 1) and take_last(x, None)[0, 0, 0] == 6.0


@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("kind", ["none", "full", "padded"])
def test_cross_modal_transformer_last_state_equals_the_full_forward(cross, kind):
    torch.manual_seed(0)
    tf = CrossModalTransformer(D, 2, 2, cross=cross).eval()  # eval: no dropout, so the paths must agree
    x = torch.randn(B, L, D, requires_grad=True)
    src = torch.randn(B, LS, D, requires_grad=True) if cross else None
    mask, smask = _mask(kind, L), (_mask(kind, LS) if cross else None)
    got = tf.forward_last(x, mask, src, smask)
    want = last_valid(tf(x, mask, src, smask), mask)
    assert got.shape == (B, D)
    if kind == "padded":
        assert torch.equal(got[2], torch.zeros(D))
    _assert_same_with_grads(got, want, [x, *([src] if cross else []), *tf.parameters()])


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("kind", ["full", "padded"])
def test_encoder_layer_last_state_equals_the_full_forward(norm_first, kind):
    torch.manual_seed(0)
    layer = EncoderLayer(D, 2, 32, norm_first=norm_first).eval()
    x = torch.randn(B, L, D, requires_grad=True)
    mask = _mask(kind, L)
    got, want = layer.forward_last(x, mask), last_valid(layer(x, mask), mask)
    _assert_same_with_grads(got, want, [x, *layer.parameters()])


@pytest.mark.parametrize("cross", [False, True])
def test_the_final_block_runs_its_feed_forward_on_one_row_per_sample(cross):
    tf = CrossModalTransformer(D, 2, 2, cross=cross)
    seen = []
    for blk in tf.blocks:
        blk.ff.register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape)))
    tf.forward_last(torch.randn(B, L, D), _mask("padded", L), *((torch.randn(B, LS, D), None) if cross else ()))
    assert seen == [(B, L, D), (B, 1, D)]
    layer, rows = EncoderLayer(D, 2, 32, norm_first=True), []
    layer.ff.register_forward_hook(lambda mod, args, out: rows.append(tuple(args[0].shape)))
    layer.forward_last(torch.randn(B, L, D), _mask("full", L))
    assert rows == [(B, 1, D)]


def _batch(model) -> Batch:
    c = model.config
    g = torch.Generator().manual_seed(1)
    lengths = {"text": 12, "audio": 15, "vision": 14}
    dims = {"text": c.text_dim, "audio": c.audio_dim, "vision": c.vision_dim}
    x = {m: torch.randn(B, lengths[m], dims[m], generator=g) for m in lengths}
    masks = {f"{m}_mask": torch.ones(B, lengths[m], dtype=torch.bool) for m in lengths}
    masks["audio_mask"][1, 9:] = False
    masks["vision_mask"][2] = False
    masks["text_mask"][3, 8:] = False
    return Batch(label=torch.linspace(-3, 3, B), **x, **masks)


@pytest.mark.parametrize("name", ["mind", "dlf", "mult"])
def test_models_predict_and_learn_as_with_the_full_final_blocks(monkeypatch, name):
    """The models that keep last states give the same outputs, losses and gradients as when every final
    block ran on every step (the former code, restored here by patching ``forward_last`` back)."""
    torch.manual_seed(0)
    model = create_model(name, "tiny").eval()
    batch = _batch(model)

    def run():
        out = model(batch)
        loss = model.objective(out, batch).total
        return out, torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)

    new_out, new_grads = run()
    monkeypatch.setattr(layers.CrossModalTransformer, "forward_last",
                        lambda self, x, mask=None, s=None, sm=None: last_valid(self(x, mask, s, sm), mask))
    monkeypatch.setattr(layers.EncoderLayer, "forward_last", lambda self, x, mask: last_valid(self(x, mask), mask))
    old_out, old_grads = run()
    torch.testing.assert_close(new_out.prediction, old_out.prediction, **TOL)
    for k, v in old_out.aux.items():
        torch.testing.assert_close(new_out.aux[k], v, **TOL)
    for a, b in zip(new_grads, old_grads):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, **TOL)
