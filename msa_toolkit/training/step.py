"""The training step as one module: :class:`TrainStep` (model + objective, what DDP wraps) and
``torch.compile`` of it (``msa train --compile``) with a loud eager fall-back.

Compilation happens on the first call, so errors surface there: :class:`CompiledStep` runs the
compiled module and, if that first call fails (no C compiler for the CPU inductor, an operator
the backend cannot lower, ...), prints a warning with the reason and runs eagerly from then on.
Failures after a successful first call are not hidden.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable

import torch
from torch import nn


class TrainStep(nn.Module):
    """model + objective in one forward, so DistributedDataParallel sees every parameter used."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):  # type: ignore[override]
        out = self.model(batch)
        loss = self.model.objective(out, batch)
        return out.prediction, loss.total, dict(loss.components)


class CompiledStep(nn.Module):
    """``module`` compiled with ``torch.compile``; the eager module when compilation fails on the first call."""

    def __init__(self, module: nn.Module, warn: Callable[[str], Any] | None = None, **compile_options: Any):
        super().__init__()
        # the eager step module (its parameters are the ones trained either way)
        self.module = module
        # the compiled callable, None after a fall-back (set with object.__setattr__ so it is not
        # registered as a second copy of ``module`` in state_dict / parameters)
        object.__setattr__(self, "_compiled", torch.compile(module, **compile_options))
        # whether the first (compiling) call has succeeded
        self._ready = False
        # where the fall-back warning goes besides ``warnings.warn`` (e.g. the run's reporter)
        self._warn = warn

    def forward(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        if self._compiled is None:
            return self.module(*args, **kwargs)
        if self._ready:
            return self._compiled(*args, **kwargs)
        try:
            out = self._compiled(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - any compiler failure falls back, loudly
            message = (f"torch.compile failed on the first step ({type(e).__name__}: {str(e).splitlines()[0][:300]}); "
                       "training continues WITHOUT compilation")
            warnings.warn(message, RuntimeWarning, stacklevel=2)
            if self._warn is not None:
                self._warn(f"[bold red]warning:[/bold red] {message}")
            object.__setattr__(self, "_compiled", None)
            return self.module(*args, **kwargs)
        self._ready = True
        return out

    @property
    def compiled(self) -> bool:
        """Whether steps run compiled (False after a fall-back)."""
        return self._compiled is not None


__all__ = ["CompiledStep"]
