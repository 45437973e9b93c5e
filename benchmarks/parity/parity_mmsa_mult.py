"""Parity of the toolkit's MulT with MMSA's (thuiar/MMSA src/MMSA/models/singleTask/MULT.py).

    python benchmarks/parity/parity_mmsa_mult.py --reference-dir /path/to/MMSA [--json PATH]

Writes benchmarks/results/parity/parity_mult_mmsa.json unless ``--json`` names another path (``--json ''``: none).

Both models at MMSA's CMU-MOSI sizes (``config_regression.json`` "mult": width 50, 10 heads, 4 levels; memory
transformers max(4, 3) = 4 layers; the toolkit's ``mosi`` preset is MulT's published setting, so MMSA's sizes are
overrides), every dropout 0, the same unaligned batch without padding (text 20, audio 30, vision 25 steps).
Bridged so the two are one function:

- convolution kernels 1 (MMSA's config says 5 with no padding, the toolkit pads "same": their lengths differ;
  DLF's parity checks that projection alone);
- MMSA's causal attention mask off (``attn_mask``; the toolkit attends bidirectionally with key padding masks);
- MMSA's encoders have no position embeddings (``TransformerEncoder(position_embedding=False)``, the default at
  a94e65d, which MULT.py keeps): the toolkit instance's position tables are replaced by zeros in memory.

Adam at MMSA's lr on both sides (trains/singleTask/MULT.py passes no weight decay). Elements whose reference
gradient is not above the two sides' measured gradient difference of their tensor get an Adam step of either sign
from rounding alone; they are reported apart, as information, and the second step starts from the reference's
parameters again (``resync``) so that those steps are not carried into it (as in the MMCL parity).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from parity_common import base_parser, finish, same  # noqa: E402
from parity_dlf import _encoder, _head  # noqa: E402  (MulT's encoder and residual head maps)
from mmsa_reference import import_mmsa, mmsa_args, mmsa_checkout  # noqa: E402
from parity_mmsa_common import FEATURE_NETS, batches, feature_subnets, run_parity  # noqa: E402

KEY = {"text": "l", "audio": "a", "vision": "v"}
DROPOUTS = ("attn_dropout", "attn_dropout_a", "attn_dropout_v", "relu_dropout", "embed_dropout", "res_dropout",
            "output_dropout", "text_dropout")
TK_DROPOUTS = ("attn_dropout", "attn_dropout_audio", "attn_dropout_vision", "ff_dropout", "res_dropout",
               "embed_dropout", "out_dropout")


class _NoPositions(nn.Module):
    """Zero position table: [B, L, D] -> zeros [L, D] (MMSA's MulT encoders add none)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(x.shape[1], x.shape[2])


def weight_map(layers: int, mem_layers: int) -> list:
    maps = [same(f"proj_{k}.weight", f"proj.{m}.conv.weight") for m, k in KEY.items()]
    for t, kt in KEY.items():
        for s, ks in KEY.items():
            if s != t:
                maps += _encoder(f"trans_{kt}_with_{ks}", f"cross.{s}_to_{t}", layers)
        maps += _encoder(f"trans_{kt}_mem", f"mem.{t}", mem_layers)
    return maps + _head(("proj1", "proj2", "out_layer"), "head", None)


def main(argv: list[str] | None = None) -> int:
    a = base_parser(__doc__.splitlines()[0]).parse_args(argv)
    ref_dir = mmsa_checkout(a.reference_dir, FEATURE_NETS, "models/singleTask/MULT.py")
    from msa_toolkit.models import create_model

    torch.manual_seed(a.seed)
    args = mmsa_args(ref_dir, "mult", attn_mask=False, conv1d_kernel_size_l=1, conv1d_kernel_size_a=1,
                     conv1d_kernel_size_v=1, **{d: 0.0 for d in DROPOUTS})
    ref = import_mmsa(ref_dir, "MMSA.models.singleTask.MULT", attributes=feature_subnets(ref_dir)).MULT(args)
    dim, heads = args.dst_feature_dim_nheads
    mem_layers = max(args.nlevels, 3)
    tk = create_model("mult", "mosi", dim=dim, heads=heads, layers=args.nlevels, mem_layers=mem_layers,
                      **{d: 0.0 for d in TK_DROPOUTS})
    n_pos = 0
    for mod in tk.modules():
        if hasattr(mod, "pos") and hasattr(mod, "blocks"):
            mod.pos, n_pos = _NoPositions(), n_pos + 1
    maps = weight_map(args.nlevels, mem_layers)
    dims = dict(zip(("text", "audio", "vision"), args.feature_dims))
    lengths = {"text": 20, "audio": 30, "vision": 25}
    x, batch = batches(a.batch_size, lengths, dims, a.seed + 1)

    def make_optimizer(model):
        return torch.optim.Adam(model.parameters(), lr=args.learning_rate)

    report = run_parity("mult", ref_dir, ref, tk, maps, x, batch,
                        {"preset": "mosi + MMSA sizes", "batch_size": a.batch_size, "lengths": lengths, "dims": dims,
                         "optimizer": "Adam", "lr": args.learning_rate, "dropout": 0.0,
                         "bridged": f"kernels 1, reference attn_mask off, {n_pos} toolkit position tables zeroed"},
                        make_optimizer, a.tolerance, a.seed, measured_floor=True, resync=True)
    report.not_compared += [
        "kept on purpose: sinusoidal positions (fairseq table) in every encoder, as the original MulT code; "
        "MMSA's MULT.py builds its TransformerEncoders without (position_embedding=False): zeroed in memory here",
        "kept on purpose: key padding masks, bidirectional attention and the last *valid* step (MMSA attends over "
        "padding with its causal mask on, attn_mask true, and reads the last padded step)",
        "kept on purpose: 'same'-padded convolutions (MMSA: no padding, L - k + 1 steps): kernels 1 here",
        "MMSA's text input dropout (text_dropout) has no toolkit counterpart (0 here)",
        "training loop: MMSA clips gradient values (0.6) and accumulates 8 batches per step (update_epochs); "
        "one plain Adam step per check here",
        "the toolkit's mosi preset is MulT's published setting (d 30, 5 heads, 5 layers); MMSA's sizes are set "
        "here as overrides"]
    return finish(report, a.json, "mmsa")


if __name__ == "__main__":
    sys.exit(main())
