"""What the parity scripts against MMSA (thuiar/MMSA) share: importing one model file, its config, the run.

``--reference-dir`` is a checkout of https://github.com/thuiar/MMSA (the repository root, holding ``src/MMSA``).
MMSA's package ``__init__`` imports its whole runner (transformers, the data loaders, every model), so
:func:`import_mmsa_model` registers empty packages for ``MMSA``, ``MMSA.models``, ``MMSA.models.singleTask`` and
``MMSA.models.subNets`` and imports only the model file and the sub-network files it names (nothing of the
checkout is copied here; the modules are dropped from ``sys.modules`` afterwards, see
``parity_common.import_reference``). :func:`mmsa_args` builds the model's ``args`` from
``src/MMSA/config/config_regression.json`` as MMSA's ``get_config_regression`` merges it.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (Namespace, ParamMap, ParityReport, check_coverage, compare_training,  # noqa: E402
                           import_reference, load_mapped, reference_commit)

REPO = "thuiar/MMSA"
CONFIG = "src/MMSA/config/config_regression.json"
#: files every MMSA parity run reads
EXPECTED_FILES = (CONFIG, "src/MMSA/models/subNets/FeatureNets.py")


class _NoBert(nn.Module):
    """Stands in for MMSA's BertTextEncoder (never built here: ``use_bert`` is off)."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise RuntimeError("the parity runs feed text features; MMSA's BertTextEncoder is not built")


def import_mmsa_model(ref_dir: Path, model_file: str) -> Any:
    """The module ``src/MMSA/models/singleTask/<model_file>.py`` of the checkout (see the module docstring)."""
    src = ref_dir / "src"
    pkg = src / "MMSA"

    def stub_packages() -> None:
        for name, folder in (("MMSA", pkg), ("MMSA.models", pkg / "models"),
                             ("MMSA.models.singleTask", pkg / "models" / "singleTask"),
                             ("MMSA.models.subNets", pkg / "models" / "subNets")):
            mod = types.ModuleType(name)
            mod.__path__ = [str(folder)]
            sys.modules[name] = mod
        import importlib
        nets = importlib.import_module("MMSA.models.subNets.FeatureNets")
        sub = sys.modules["MMSA.models.subNets"]
        sub.SubNet, sub.TextSubNet, sub.BertTextEncoder = nets.SubNet, nets.TextSubNet, _NoBert

    return import_reference(src, f"MMSA.models.singleTask.{model_file}", before=stub_packages)


def mmsa_args(ref_dir: Path, model: str, dataset: str = "mosi", aligned: bool = False,
              **overrides: Any) -> Namespace:
    """``args`` of MMSA model ``model`` on ``dataset`` (regression): the dataset's feature dims and lengths, the
    model's commonParams and datasetParams, then ``overrides``."""
    cfg = json.loads((ref_dir / CONFIG).read_text())
    data = cfg["datasetCommonParams"][dataset]
    data = data["aligned" if aligned and "aligned" in data else "unaligned"]
    values = {**data, **cfg[model]["commonParams"], **cfg[model]["datasetParams"][dataset],
              "model_name": model, "dataset_name": dataset, "train_mode": "regression", "use_bert": False}
    values.update(overrides)
    return Namespace(values)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (MMSA's ``count_parameters``: ``requires_grad`` ones)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def zero_dropout(args: Namespace, names: Sequence[str]) -> None:
    """Set the named dropout ``args`` to 0 (tuples and MFN's ``{"drop": p}`` dicts included)."""
    for n in names:
        v = getattr(args, n)
        if isinstance(v, dict):
            setattr(args, n, {**v, "drop": 0.0})
        elif isinstance(v, (list, tuple)):
            setattr(args, n, [0.0] * len(v))
        else:
            setattr(args, n, 0.0)


def batches(B: int, lengths: Mapping[str, int], dims: Mapping[str, int], seed: int) -> tuple[dict, Any]:
    """Random fp32 inputs (no padding) and labels in [-3, 3]: (tensors by modality, the toolkit Batch)."""
    from msa_toolkit.data.batch import Batch

    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(B, lengths[m], dims[m], generator=g) for m in ("text", "audio", "vision")}
    label = torch.empty(B).uniform_(-3, 3, generator=g)
    masks = {f"{m}_mask": torch.ones(B, lengths[m], dtype=torch.bool) for m in x}
    return {**x, "label": label}, Batch(label=label, **x, **masks)


def run_parity(name: str, ref_dir: Path, ref: nn.Module, tk: nn.Module, maps: Sequence[ParamMap], x: dict, batch: Any,
               setting: dict, make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], tolerance: float,
               seed: int, ref_unused: Sequence[str] = (), tk_unused: Sequence[str] = (),
               count_note: str = "", measured_floor: bool = False, resync: bool = False) -> ParityReport:
    """Map the weights, then compare parameter counts, forward, L1 loss, gradients and two Adam steps.

    The reference's loss is its training loop's ``nn.L1Loss()(outputs['M'], labels.view(-1, 1))``; the toolkit's
    is its objective's ``prediction_l1``. ``make_optimizer(model)`` builds each side's optimiser the way its
    training code does. ``measured_floor``: see ``parity_common.compare_training`` (elements whose reference
    gradient is within the two sides' measured gradient difference count as rounding noise after a step) and
    ``resync`` (each step starts from the reference's parameters, so that noise is not carried into the next).
    """
    check_coverage(maps, ref, tk, ref_unused, tk_unused)
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()
    report = ParityReport(name, REPO, reference_commit(ref_dir), setting)
    n_ref, n_tk = count_parameters(ref), tk.num_parameters()
    report.add("parameter count (trainable)", float(abs(n_ref - n_tk)), 0.0,
               f"reference {n_ref:,}, toolkit {n_tk:,}" + (f"; {count_note}" if count_note else ""))

    def ref_fn():
        pred = ref(x["text"], x["audio"], x["vision"])["M"]
        return {"prediction": pred.view(-1), "total": nn.functional.l1_loss(pred, x["label"].view(-1, 1))}

    def tk_fn():
        out = tk(batch)
        loss = tk.objective(out, batch)
        return {"prediction": out.prediction, **loss.components, "total": loss.total}

    pairs = [("forward: prediction", "prediction", "prediction"), ("loss: L1", "total", "prediction_l1"),
             ("loss: total", "total", "total")]
    first_ref = next(ref.parameters())

    def optimizer(params) -> torch.optim.Optimizer:
        params = list(params)
        return make_optimizer(ref if params[0] is first_ref else tk)

    compare_training(report, ref, tk, maps, ref_fn, tk_fn, pairs, optimizer, seed=seed, tolerance=tolerance,
                     measured_floor=measured_floor, resync=resync)
    return report


def identity_map(ref: nn.Module, tk: nn.Module, renames: Mapping[str, str],
                 transforms: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None) -> list[ParamMap]:
    """One-to-one entries for every reference parameter: its name with each ``renames`` prefix replaced
    (longest prefix first), optionally through ``transforms[reference name]`` (a shape/permutation)."""
    from parity_common import same

    out = []
    for n, _ in ref.named_parameters():
        t = n
        for old in sorted(renames, key=len, reverse=True):
            if n == old or n.startswith(old + "."):
                t = renames[old] + n[len(old):]
                break
        out.append(same(n, t, (transforms or {}).get(n)))
    return out


def subnet_renames(prefixes: dict[str, str]) -> dict[str, str]:
    """MMSA SubNet (norm, linear_1..3) -> toolkit UtteranceSubNet (net.0/2/4/6), per (reference, toolkit) prefix."""
    out = {}
    for r, t in prefixes.items():
        out.update({f"{r}.norm": f"{t}.net.0", f"{r}.linear_1": f"{t}.net.2", f"{r}.linear_2": f"{t}.net.4",
                    f"{r}.linear_3": f"{t}.net.6"})
    return out


def batchnorm_subnets(tk: nn.Module, names: tuple[str, ...]) -> None:
    """Swap each named UtteranceSubNet's LayerNorm for a BatchNorm1d of the same width (in memory)."""
    for n in names:
        net = getattr(tk, n).net
        net[0] = nn.BatchNorm1d(net[0].normalized_shape[0])
