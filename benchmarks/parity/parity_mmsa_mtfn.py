"""Parity of the toolkit's MTFN with MMSA's (thuiar/MMSA ``src/MMSA/models/multiTask/MTFN.py``).

    python benchmarks/parity/parity_mmsa_mtfn.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_mtfn_mmsa.json unless ``--json`` names another path (``--json ''``: none).

Both models at MMSA's CH-SIMS configuration (``config/config_regression.json`` "mtfn"/"sims", toolkit preset
``sims``; the script checks that the preset holds the same values), every dropout 0. The toolkit's documented
deviations are bridged so the two are one function: the toolkit's subnetwork LayerNorms are replaced in memory
by BatchNorm1d (MMSA's); audio/vision go to MMSA averaged over time (its loader's ``need_normalized``) and to the
toolkit as the full sequences without padding (its masked mean is the same average); the fusion tensor's index
order is a column permutation of the first post-fusion layer (mapped). Loss: MMSA's trainer, Σ_m w_m · L1 over
M, T, A, V with the config's weights; optimiser: MMSA's Adam groups (per-subnetwork weight decay) against the
toolkit's ``param_groups``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import (Namespace, ParamMap, ParityReport, after_step_as_info, base_parser,  # noqa: E402
                           check_coverage, check_reference_dir, compare_training, finish, import_reference,
                           load_mapped, reference_commit, same)
from parity_mmsa_common import batchnorm_subnets, count_parameters  # noqa: E402

REPO = "thuiar/MMSA"
EXPECTED_FILES = ("src/MMSA/models/multiTask/MTFN.py", "src/MMSA/trains/multiTask/MTFN.py",
                  "src/MMSA/config/config_regression.json")
#: MMSA's task letters -> toolkit head names / subnetwork prefixes
SUBNETS = {"audio_subnet": "audio_net", "video_subnet": "vision_net"}
HEADS = {"text": "T", "audio": "A", "video": "V"}


def mmsa_config(ref_dir: Path, dataset: str = "sims") -> dict:
    """MMSA's MTFN parameters for ``dataset`` (config_regression.json: common + dataset params)."""
    cfg = json.loads((ref_dir / "src/MMSA/config/config_regression.json").read_text())
    common = cfg["datasetCommonParams"][dataset]["unaligned"]
    return {**cfg["mtfn"]["commonParams"], **cfg["mtfn"]["datasetParams"][dataset], **common}


def preset_mismatches(p: dict, c) -> list[str]:
    """Differences between MMSA's parameters ``p`` and the toolkit config ``c`` built from preset ``sims``."""
    want = {"text_dim": p["feature_dims"][0], "audio_dim": p["feature_dims"][1], "vision_dim": p["feature_dims"][2],
            "text_hidden": p["hidden_dims"][0], "audio_hidden": p["hidden_dims"][1],
            "vision_hidden": p["hidden_dims"][2], "text_out": p["text_out"], "post_fusion_dim": p["post_fusion_dim"],
            "post_text_dim": p["post_text_dim"], "post_audio_dim": p["post_audio_dim"],
            "post_vision_dim": p["post_video_dim"], "audio_dropout": p["dropouts"][0],
            "vision_dropout": p["dropouts"][1], "text_dropout": 0.0,  # reset to 0 by MMSA's 1-layer TextSubNet
            "post_text_dropout": p["post_dropouts"][0], "post_audio_dropout": p["post_dropouts"][1],
            "post_vision_dropout": p["post_dropouts"][2], "post_fusion_dropout": p["post_dropouts"][3],
            "batch_size": p["batch_size"], "lr": p["learning_rate"], "weight_M": p["M"], "weight_T": p["T"],
            "weight_A": p["A"], "weight_V": p["V"], "text_weight_decay": p["text_weight_decay"],
            "audio_weight_decay": p["audio_weight_decay"], "vision_weight_decay": p["video_weight_decay"]}
    return [f"{k}: MMSA {v}, preset {getattr(c, k)}" for k, v in want.items() if getattr(c, k) != v]


def fusion_permutation(t: int, a: int, v: int) -> torch.Tensor:
    """For each toolkit fusion column (text, audio, vision order, constant 1 last) the MMSA column (audio,
    video, text order, constant 1 first)."""
    it, ia, iv = torch.meshgrid(torch.arange(t + 1), torch.arange(a + 1), torch.arange(v + 1), indexing="ij")
    k = lambda i, n: (i + 1) % (n + 1)  # noqa: E731  toolkit index -> MMSA index (the 1 moves to the front)
    return ((k(ia, a) * (v + 1) + k(iv, v)) * (t + 1) + k(it, t)).flatten()


def weight_map(c) -> list[ParamMap]:
    """MMSA MTFN state_dict names -> toolkit MTFN names."""
    maps = []
    for ref, tk in SUBNETS.items():
        maps += [same(f"{ref}.norm.{p}", f"{tk}.net.0.{p}") for p in ("weight", "bias")]
        maps += [same(f"{ref}.linear_{i}.{p}", f"{tk}.net.{j}.{p}") for i, j in ((1, 2), (2, 4), (3, 6))
                 for p in ("weight", "bias")]
    maps += [same(f"text_subnet.rnn.{p}_l0", f"text_net.rnn.{p}_l0") for p in ("weight_ih", "weight_hh", "bias_ih",
                                                                               "bias_hh")]
    maps += [same(f"text_subnet.linear_1.{p}", f"text_net.linear.{p}") for p in ("weight", "bias")]
    perm = fusion_permutation(c.text_out, c.audio_hidden, c.vision_hidden)
    maps.append(same("post_fusion_layer_1.weight", "post.1.weight", lambda w: w[:, perm]))
    maps.append(same("post_fusion_layer_1.bias", "post.1.bias"))
    maps += [same(f"post_fusion_layer_{i}.{p}", f"post.{j}.{p}") for i, j in ((2, 3), (3, 5))
             for p in ("weight", "bias")]
    for ref, task in HEADS.items():
        maps += [same(f"post_{ref}_layer_{i}.{p}", f"heads.{task}.{j}.{p}") for i, j in ((1, 1), (2, 3), (3, 5))
                 for p in ("weight", "bias")]
    return maps


def main(argv: list[str] | None = None) -> int:
    ap = base_parser(__doc__.splitlines()[0])
    ap.add_argument("--float64", action="store_true", help="both sides in float64 (the after-step check's rounding "
                    "amplification gone; writes parity_mtfn_mmsa_float64.json)")
    a = ap.parse_args(argv)
    if a.float64:
        torch.set_default_dtype(torch.float64)
    ref_dir = check_reference_dir(a.reference_dir, EXPECTED_FILES, REPO)
    from msa_toolkit.data.batch import Batch
    from msa_toolkit.models import create_model

    p = mmsa_config(ref_dir)
    tk = create_model("mtfn", "sims")
    mismatches = preset_mismatches(p, tk.config)
    zero = {f: 0.0 for f in ("audio_dropout", "vision_dropout", "text_dropout", "post_fusion_dropout",
                             "post_text_dropout", "post_audio_dropout", "post_vision_dropout")}
    torch.manual_seed(a.seed)
    module = import_reference(ref_dir / "src/MMSA/models/multiTask", "MTFN")
    ref = module.MTFN(Namespace({**p, "dropouts": [0.0] * 3, "post_dropouts": [0.0] * 4, "train_mode": "regression",
                                 "num_classes": 3}))
    tk = create_model("mtfn", "sims", **zero)
    c = tk.config
    batchnorm_subnets(tk, ("audio_net", "vision_net"))  # bridge: MMSA's BatchNorm1d
    maps = weight_map(c)
    check_coverage(maps, ref, tk, ref_unused=("output_range", "output_shift"))
    load_mapped(maps, ref, tk)
    ref.train(), tk.train()

    g = torch.Generator().manual_seed(a.seed + 1)
    B = a.batch_size
    L = {"text": c.text_len, "audio": c.audio_len, "vision": c.vision_len}
    dims = {"text": c.text_dim, "audio": c.audio_dim, "vision": c.vision_dim}
    x = {m: torch.randn(B, L[m], dims[m], generator=g) for m in L}
    labels = {"M": torch.empty(B).uniform_(-1, 1, generator=g),
              **{t: torch.empty(B).uniform_(-1, 1, generator=g) for t in "TAV"}}
    full = {f"{m}_mask": torch.ones(B, L[m], dtype=torch.bool) for m in L}
    batch = Batch(label=labels["M"], label_T=labels["T"], label_A=labels["A"], label_V=labels["V"], **x, **full)
    weights = {"M": p["M"], "T": p["T"], "A": p["A"], "V": p["V"]}

    def ref_fn():
        out = ref(x["text"], x["audio"].mean(1, keepdim=True), x["vision"].mean(1, keepdim=True))
        losses = {m: weights[m] * nn.functional.l1_loss(out[m], labels[m].view(-1, 1)) for m in "MTAV"}
        return {**{f"pred_{m}": out[m].squeeze(-1) for m in "MTAV"}, **{f"loss_{m}": v for m, v in losses.items()},
                "total": sum(losses.values())}

    def tk_fn():
        out = tk(batch)
        loss = tk.objective(out, batch)
        return {"pred_M": out.prediction, **{f"pred_{t}": out.aux[f"prediction_{t}"] for t in "TAV"},
                "loss_M": loss.components["prediction_l1"],
                **{f"loss_{t}": loss.components[f"prediction_{t}_l1"] for t in "TAV"}, "total": loss.total}

    ref_ids = {id(q) for q in ref.parameters()}

    def make_optimizer(params):
        params = list(params)
        if id(params[0]) in ref_ids:  # MMSA's trains/multiTask/MTFN.py groups
            named = list(ref.named_parameters())
            other = [q for n, q in named[2:] if not n.startswith(("text_subnet", "audio_subnet", "video_subnet"))]
            return torch.optim.Adam([
                {"params": list(ref.text_subnet.parameters()), "weight_decay": p["text_weight_decay"]},
                {"params": list(ref.audio_subnet.parameters()), "weight_decay": p["audio_weight_decay"]},
                {"params": list(ref.video_subnet.parameters()), "weight_decay": p["video_weight_decay"]},
                {"params": [q for _, q in named[:2]], "lr": 0.0}, {"params": other}], lr=p["learning_rate"])
        return torch.optim.Adam(tk.param_groups(c.lr, c.weight_decay), lr=c.lr)

    report = ParityReport("mtfn", REPO, reference_commit(ref_dir),
                          {"preset": "sims", "batch_size": B, "lengths": L, "dims": dims, "optimizer": "Adam (groups)",
                           "lr": c.lr, "weights": weights, "dropout": 0.0,
                           "parameters": {"reference": count_parameters(ref), "toolkit": tk.num_parameters()}})
    report.add("config: preset sims vs config_regression.json", float(len(mismatches)), 0.0,
               "; ".join(mismatches) or "equal")
    report.add("parameter count (trainable)", float(abs(report.setting["parameters"]["reference"]
                                                         - report.setting["parameters"]["toolkit"])), 0.0)
    pairs = [(f"forward: prediction {m}", f"pred_{m}", f"pred_{m}") for m in "MTAV"]
    pairs += [(f"loss: {m} (weighted L1)", f"loss_{m}", f"loss_{m}") for m in "MTAV"]
    pairs.append(("loss: total", "total", "total"))
    compare_training(report, ref, tk, maps, ref_fn, tk_fn, pairs, make_optimizer, seed=a.seed, tolerance=a.tolerance,
                     measured_floor=True)
    if not a.float64:
        after_step_as_info(report, "Adam (lr 5e-3, eps 1e-8) amplifies the gradients' rounding differences on "
                                   "elements with |g| ~ 1e-7")
    report.not_compared += [
        "LayerNorm (toolkit) vs BatchNorm1d (MMSA) at the subnetworks' input: the toolkit's is replaced by "
        "BatchNorm1d in memory (documented deviation)",
        "padding: MMSA averages audio/vision over every stored step and reads the LSTM after the padded text; "
        "the toolkit uses valid steps only (inputs here have no padding)",
        "dropout (0 on both sides)"]
    return finish(report, a.json, "mmsa_float64" if a.float64 else "mmsa")


if __name__ == "__main__":
    sys.exit(main())
