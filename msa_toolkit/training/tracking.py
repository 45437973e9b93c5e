"""Experiment tracking: ``msa train --log tensorboard``.

:class:`TensorBoardLogger` is a Trainer callback (``Trainer(callbacks=...)``, ``train(..., callbacks=...)``)
that writes each epoch's ``log.jsonl`` record as TensorBoard scalars: ``train/<loss component>``,
``valid/<metric>`` (with ``valid/loss``), ``test/<metric>`` when the recipe evaluates test every epoch, and
``lr``, at step = epoch, and once, as text ``config``, the run's resolved model and trainer configuration
(JSON). Metric names are MMSA's when the run's ``trainer.mmsa_names`` is on; an undefined
metric (null) is not written. One event folder per seed: ``<root>/seed_<s>/`` (``tensorboard --logdir root``
compares the seeds). Only the process that writes the run's files logs (rank 0 under torchrun).

TensorBoard itself is optional (``pip install tensorboard``): :func:`require_tensorboard` says so in one
line before anything is trained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import MSAError

#: the folder inside ``msa train --out`` that holds the event files
TENSORBOARD_DIR = "tensorboard"
#: ``--log`` values
LOGGERS = ("none", "tensorboard")


def summary_writer(log_dir: Path) -> Any:
    """``torch.utils.tensorboard.SummaryWriter(log_dir)``; an MSAError when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch's module imports the tensorboard package
        raise MSAError("--log tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(log_dir=str(log_dir))


def require_tensorboard() -> None:
    """Fail early (one line) when ``--log tensorboard`` cannot write."""
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        raise MSAError("--log tensorboard needs the tensorboard package: pip install tensorboard") from None


def resolved_config(trainer: Any) -> str:
    """The run's resolved configuration as indented JSON in a Markdown code block (TensorBoard's text tab)."""
    model_config = getattr(getattr(trainer.model, "config", None), "to_dict", dict)()
    doc = {"model": getattr(trainer.model, "name", ""), "model_config": model_config,
           "trainer": trainer.config.to_dict()}
    return "```\n" + json.dumps(doc, indent=1, sort_keys=True, default=str) + "\n```"


class TensorBoardLogger:
    """Trainer callback: an epoch record as scalars (module docstring); ``writer`` makes a writer for a folder."""

    def __init__(self, root: str | Path, writer: Callable[[Path], Any] | None = None):
        self.root = Path(root)
        self.make_writer = writer or summary_writer
        self.writers: dict[Path, Any] = {}

    def __call__(self, trainer: Any, record: Mapping[str, Any]) -> None:
        if not trainer.writes:
            return
        from .metrics import mmsa_names

        path = self.root / f"seed_{trainer.config.seed}"
        if path not in self.writers:
            self.writers[path] = self.make_writer(path)
            self.writers[path].add_text("config", resolved_config(trainer), 0)
        w, step = self.writers[path], int(record["epoch"])
        for group in ("train", "valid", "test"):
            values = dict(record.get(group) or {})
            if group != "train" and trainer.config.mmsa_names:
                values = mmsa_names(values)
            for k, v in values.items():
                if v is not None:
                    w.add_scalar(f"{group}/{k}", float(v), step)
        if record.get("lr") is not None:
            w.add_scalar("lr", float(record["lr"]), step)
        w.flush()

    def close(self) -> None:
        for w in self.writers.values():
            w.close()
        self.writers.clear()
