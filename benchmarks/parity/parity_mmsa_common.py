"""What the parity scripts against MMSA (thuiar/MMSA) share: the models' sub-networks, the run and comparison.

``--reference-dir`` is a checkout of https://github.com/thuiar/MMSA (the repository root, holding ``src/MMSA``),
imported with ``mmsa_reference.import_mmsa`` (MMSA's package ``__init__`` files are skipped; nothing of the checkout
is copied here). The feature-input models get :func:`feature_subnets` on the bare ``MMSA.models.subNets``;
their ``args`` come from ``mmsa_reference.mmsa_args``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mmsa_reference import REPO, SUBNETS, import_mmsa, mmsa_args, mmsa_checkout  # noqa: E402
from parity_common import (Namespace, ParamMap, ParityReport, base_parser, check_coverage, compare_training,  # noqa: E402
                           finish, load_mapped, reference_commit)

#: the sub-network file the feature-input models import (relative to ``src/MMSA``)
FEATURE_NETS = "models/subNets/FeatureNets.py"


class _NoBert(nn.Module):
    """Stands in for MMSA's BertTextEncoder (never built here: ``use_bert`` is off)."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise RuntimeError("the parity runs feed text features; MMSA's BertTextEncoder is not built")


def feature_subnets(root: Path) -> dict[str, dict[str, Any]]:
    """``attributes`` of the bare ``MMSA.models.subNets`` for a feature-input model file: FeatureNets' SubNet and
    TextSubNet, and :class:`_NoBert` as BertTextEncoder."""
    nets = import_mmsa(root, f"{SUBNETS}.FeatureNets")
    return {SUBNETS: {"SubNet": nets.SubNet, "TextSubNet": nets.TextSubNet, "BertTextEncoder": _NoBert}}


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (MMSA's ``count_parameters``: ``requires_grad`` ones)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


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


# --------------------------------------------------------------------------- multi-task models (MTFN, MLMF, MLF-DNN)

#: MMSA's unimodal head prefixes -> the toolkit's ``heads`` keys
MULTITASK_HEADS = {"text": "T", "audio": "A", "video": "V"}


def head_renames() -> dict[str, str]:
    """MMSA's ``post_{text,audio,video}_layer_{1,2,3}`` -> the toolkit's ``heads.{T,A,V}.{1,3,5}``."""
    return {f"post_{r}_layer_{i}": f"heads.{t}.{j}" for r, t in MULTITASK_HEADS.items()
            for i, j in ((1, 1), (2, 3), (3, 5))}


def multitask_preset_mismatches(p: Mapping[str, Any], c: Any, extra: Mapping[str, Any]) -> list[str]:
    """Differences between MMSA's multi-task parameters ``p`` (config_regression.json, sims) and the toolkit
    config ``c``: inputs, subnetwork widths and dropouts, heads, task weights, weight decays, batch size, lr,
    plus the model's own ``extra`` (toolkit field -> MMSA value)."""
    want = {"text_dim": p["feature_dims"][0], "audio_dim": p["feature_dims"][1], "vision_dim": p["feature_dims"][2],
            "text_hidden": p["hidden_dims"][0], "audio_hidden": p["hidden_dims"][1],
            "vision_hidden": p["hidden_dims"][2], "post_text_dim": p["post_text_dim"],
            "post_audio_dim": p["post_audio_dim"], "post_vision_dim": p["post_video_dim"],
            "audio_dropout": p["dropouts"][0], "vision_dropout": p["dropouts"][1],
            "text_dropout": 0.0,  # reset to 0 by MMSA's 1-layer TextSubNet
            "post_text_dropout": p["post_dropouts"][0], "post_audio_dropout": p["post_dropouts"][1],
            "post_vision_dropout": p["post_dropouts"][2], "batch_size": p["batch_size"], "lr": p["learning_rate"],
            "weight_M": p["M"], "weight_T": p["T"], "weight_A": p["A"], "weight_V": p["V"],
            "text_weight_decay": p["text_weight_decay"], "audio_weight_decay": p["audio_weight_decay"],
            "vision_weight_decay": p["video_weight_decay"], **extra}
    return [f"{k}: MMSA {v}, preset {getattr(c, k)}" for k, v in want.items() if getattr(c, k) != v]


def run_multitask_parity(name: str, ref_dir: Path, ref: nn.Module, tk: nn.Module, maps: Sequence[ParamMap],
                         p: Mapping[str, Any], mismatches: Sequence[str], setting: dict,
                         make_optimizer: Callable[[nn.Module], torch.optim.Optimizer], batch_size: int, seed: int,
                         tolerance: float, ref_unused: Sequence[str] = ()) -> ParityReport:
    """Map the weights, then compare the preset, parameter counts, the four predictions (M, T, A, V), the four
    weighted L1 terms and their total (MMSA's multi-task trainers), gradients and two optimiser steps.

    MMSA gets audio/vision averaged over time (its loader's ``need_normalized``), the toolkit the full sequences
    without padding (its masked mean is the same average). ``make_optimizer(model)`` builds each side's
    optimiser the way its training code does."""
    from msa_toolkit.data.batch import Batch

    check_coverage(maps, ref, tk, ref_unused)
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()
    c = tk.config
    g = torch.Generator().manual_seed(seed + 1)
    L = {"text": c.text_len, "audio": c.audio_len, "vision": c.vision_len}
    dims = {"text": c.text_dim, "audio": c.audio_dim, "vision": c.vision_dim}
    x = {m: torch.randn(batch_size, L[m], dims[m], generator=g) for m in L}
    labels = {t: torch.empty(batch_size).uniform_(-1, 1, generator=g) for t in "MTAV"}
    full = {f"{m}_mask": torch.ones(batch_size, L[m], dtype=torch.bool) for m in L}
    batch = Batch(label=labels["M"], label_T=labels["T"], label_A=labels["A"], label_V=labels["V"], **x, **full)
    weights = {t: p[t] for t in "MTAV"}

    def ref_fn():
        out = ref(x["text"], x["audio"].mean(1, keepdim=True), x["vision"].mean(1, keepdim=True))
        losses = {t: weights[t] * nn.functional.l1_loss(out[t], labels[t].view(-1, 1)) for t in "MTAV"}
        return {**{f"pred_{t}": out[t].squeeze(-1) for t in "MTAV"}, **{f"loss_{t}": v for t, v in losses.items()},
                "total": sum(losses.values())}

    def tk_fn():
        out = tk(batch)
        loss = tk.objective(out, batch)
        return {"pred_M": out.prediction, **{f"pred_{t}": out.aux[f"prediction_{t}"] for t in "TAV"},
                "loss_M": loss.components["prediction_l1"],
                **{f"loss_{t}": loss.components[f"prediction_{t}_l1"] for t in "TAV"}, "total": loss.total}

    report = ParityReport(name, REPO, reference_commit(ref_dir),
                          {**setting, "batch_size": batch_size, "lengths": L, "dims": dims, "weights": weights,
                           "parameters": {"reference": count_parameters(ref), "toolkit": tk.num_parameters()}})
    report.add("config: preset sims vs config_regression.json", float(len(mismatches)), 0.0,
               "; ".join(mismatches) or "equal")
    report.add("parameter count (trainable)", float(abs(report.setting["parameters"]["reference"]
                                                         - report.setting["parameters"]["toolkit"])), 0.0)
    pairs = [(f"forward: prediction {t}", f"pred_{t}", f"pred_{t}") for t in "MTAV"]
    pairs += [(f"loss: {t} (weighted L1)", f"loss_{t}", f"loss_{t}") for t in "MTAV"]
    pairs.append(("loss: total", "total", "total"))
    ref_ids = {id(q) for q in ref.parameters()}

    def optimizer(params) -> torch.optim.Optimizer:
        params = list(params)
        return make_optimizer(ref if id(params[0]) in ref_ids else tk)

    compare_training(report, ref, tk, maps, ref_fn, tk_fn, pairs, optimizer, seed=seed, tolerance=tolerance,
                     measured_floor=True)
    return report


def multitask_setup(argv: list[str] | None, doc: str, model: str, file: str,
                    extra: Callable[[dict], Mapping[str, Any]], bridge: tuple[str, str]) -> tuple:
    """The command line (``--float64`` added) and both models of a multi-task parity script: MMSA's
    ``models/multiTask/<file>.py`` and the toolkit's ``model`` at the ``sims`` settings, every dropout 0, the
    toolkit's ``bridge`` subnetworks on BatchNorm1d. Returns (args, ref_dir, MMSA parameters, reference model,
    toolkit model, preset mismatches; ``extra(p)`` adds the model's own fields to that check)."""
    ap = base_parser(doc.splitlines()[0])
    ap.add_argument("--float64", action="store_true", help="both sides in float64 (the after-step check's rounding "
                    f"amplification gone; writes parity_{model}_mmsa_float64.json)")
    a = ap.parse_args(argv)
    if a.float64:
        torch.set_default_dtype(torch.float64)
    ref_dir = mmsa_checkout(a.reference_dir, f"models/multiTask/{file}.py", f"trains/multiTask/{file}.py")
    from msa_toolkit.models import create_model

    p = vars(mmsa_args(ref_dir, model, "sims"))
    preset = create_model(model, "sims").config
    mismatches = multitask_preset_mismatches(p, preset, extra(p))
    torch.manual_seed(a.seed)
    module = import_mmsa(ref_dir, f"MMSA.models.multiTask.{file}")
    ref = getattr(module, file)(Namespace({**p, "dropouts": [0.0] * 3, "post_dropouts": [0.0] * 4}))
    tk = create_model(model, "sims", **{f: 0.0 for f in vars(preset) if f.endswith("_dropout")})
    batchnorm_subnets(tk, bridge)
    return a, ref_dir, p, ref, tk, mismatches


def multitask_finish(report: ParityReport, a: Any) -> int:
    """Record what a multi-task parity run leaves out, print and write the report."""
    report.not_compared += [
        "LayerNorm (toolkit) vs BatchNorm1d (MMSA) at the subnetworks' input: the toolkit's is replaced by "
        "BatchNorm1d in memory (documented deviation)",
        "padding: MMSA averages audio/vision over every stored step and reads the LSTM after the padded text; "
        "the toolkit uses valid steps only (inputs here have no padding)",
        "dropout (0 on both sides)"]
    return finish(report, a.json, "mmsa_float64" if a.float64 else "mmsa")


#: MMSA's subnetwork attributes in its multi-task models
MMSA_SUBNETS = ("text_subnet", "audio_subnet", "video_subnet")


def mmsa_subnet_groups(ref: nn.Module, p: Mapping[str, Any]) -> list[dict]:
    """The first three Adam groups of MMSA's multi-task trainers: each subnetwork with its own weight decay."""
    return [{"params": list(getattr(ref, n).parameters()), "weight_decay": p[f"{n.split('_')[0]}_weight_decay"]}
            for n in MMSA_SUBNETS]
