"""Lean training steps: multi-tensor optimisers, no per-step loss reads, thread settings, --compile."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from msa_toolkit.cli.main import configure_threads
from msa_toolkit.errors import MSAError
from msa_toolkit.threads import set_threads
from msa_toolkit.training import report
from msa_toolkit.training.step import CompiledStep
from msa_toolkit.training.config import TrainConfig
from msa_toolkit.training.optim import build_optimizer


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_optimisers_use_a_multi_tensor_implementation(name):
    opt = build_optimizer(nn.Linear(3, 2), TrainConfig(optimizer=name, lr=1e-3))
    assert opt.defaults.get("fused") or opt.defaults.get("foreach")  # fused where this torch has it (CPU too)
    opt.param_groups[0]["params"][0].grad = torch.ones(2, 3)
    with torch.no_grad():  # the same update as the per-tensor implementation
        plain = type(opt)([torch.nn.Parameter(opt.param_groups[0]["params"][0].detach().clone())], lr=1e-3,
                          foreach=False, **({"momentum": 0.9} if name == "sgd" else {}))
    plain.param_groups[0]["params"][0].grad = torch.ones(2, 3)
    opt.step(), plain.step()
    torch.testing.assert_close(opt.param_groups[0]["params"][0], plain.param_groups[0]["params"][0])


class _CountingLoss:
    """A loss stand-in that counts how often it is read on the host."""

    reads = 0

    def __float__(self):
        type(self).reads += 1
        return 0.5


def test_progress_bar_reads_the_loss_at_most_once_per_refresh_interval(monkeypatch):
    monkeypatch.setattr(report, "LOSS_REFRESH_SECONDS", 3600.0)
    reporter = report.Reporter(True)
    with reporter.epoch_bar(1, 1, 50) as advance:
        for _ in range(50):
            advance(_CountingLoss())
    assert _CountingLoss.reads == 1  # the first step only, not one host sync per step


def test_configure_threads_keeps_explicit_settings():
    env: dict[str, str] = {}
    configure_threads(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    env = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3"}
    configure_threads(env)
    assert env == {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "3"}
    env = {"MSA_THREADS": "2", "OMP_NUM_THREADS": "8"}
    configure_threads(env)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    with pytest.raises(MSAError):
        configure_threads({"MSA_THREADS": "many"})


def test_set_threads_sets_a_positive_count_and_refuses_others():
    before = torch.get_num_threads()
    try:
        set_threads(0), set_threads(None)  # keep torch's count
        assert torch.get_num_threads() == before
        set_threads(2)
        assert torch.get_num_threads() == 2
        for bad in (-1, 1.5, True, "2"):
            with pytest.raises(MSAError, match="threads must be a positive integer"):
                set_threads(bad)
    finally:
        torch.set_num_threads(before)


def test_compiled_step_falls_back_loudly_when_compilation_fails(monkeypatch):
    def broken_compile(module, **kw):
        def run(*a, **k):
            raise RuntimeError("no compiler here")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    lin = nn.Linear(2, 1)
    messages: list[str] = []
    step = CompiledStep(lin, messages.append)
    x = torch.randn(4, 2)
    with pytest.warns(RuntimeWarning, match="WITHOUT compilation"):
        out = step(x)
    assert torch.equal(out, lin(x)) and not step.compiled
    assert "no compiler here" in messages[0]
    assert torch.equal(step(x), lin(x))  # eager from then on, no second warning
    assert len(messages) == 1


def test_compiled_step_keeps_the_parameters_and_state_dict_names():
    lin = nn.Linear(2, 1)
    step = CompiledStep(lin)
    assert [n for n, _ in step.named_parameters()] == ["module.weight", "module.bias"]
    assert list(step.state_dict()) == ["module.weight", "module.bias"]
