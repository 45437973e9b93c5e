"""Fixtures shared by the model tests."""

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """A tiny randomly initialised BERT saved to a temp folder (tests text-encoder fine-tuning offline)."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny_bert")
    transformers.BertModel(cfg).save_pretrained(path)
    return str(path)


def _forward_backward(model, batch):
    """(output, loss, gradients by parameter name) of one seeded training step."""
    torch.manual_seed(3)
    out = model(batch)
    loss = model.objective(out, batch)
    model.zero_grad(set_to_none=True)
    loss.total.backward()
    return out, loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _assert_same_step(fast, slow, tol: float = 1e-6) -> None:
    """Two :func:`_forward_backward` results agree: prediction, every aux tensor, the loss, every gradient."""
    close = lambda a, b: torch.testing.assert_close(a, b, atol=tol, rtol=tol)  # noqa: E731
    close(fast[0].prediction, slow[0].prediction)
    for k, v in slow[0].aux.items():
        close(fast[0].aux[k], v)
    close(fast[1].total, slow[1].total)
    assert fast[2].keys() == slow[2].keys()
    for k, v in slow[2].items():
        close(fast[2][k], v)


@pytest.fixture
def step_check():
    """``(forward_backward(model, batch), assert_same_step(fast, slow))``: compare two paths of one model."""
    return _forward_backward, _assert_same_step
