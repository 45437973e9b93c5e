"""Every registered model's published presets, pinned (issue 39 item 7).

Two kinds of pins:

* the sizes each preset takes from its authors' reference code (input dims and lengths, widths, heads,
  depths, kernels), with the file each number was read from (the checkouts were read with
  ``git show HEAD:<path>``; nothing of them is copied here);
* the trainable parameter count of every (model, published preset), so that any change of architecture
  shows. ALMT MOSI and DLF MOSI equal the reference models' counts (benchmarks/param_counts.py REFERENCE);
  the others are the toolkit's own counts as recorded in benchmarks/results/param_counts.md.
"""

from __future__ import annotations

import pytest
import torch

from msa_toolkit.models import create_model, get_entry, list_models, resolve_config

#: (model, preset) -> trainable parameters (text encoder excluded); "tiny" presets are for tests, not published
PARAMETERS = {
    ("almt", "mosi"): 2_603_649,     # = the reference ALMT's count (Haoyu-ha/ALMT, configs/mosi.yaml)
    ("almt", "mosei"): 3_223_041,
    ("dlf", "mosi"): 1_291_105,      # = the reference DLF's count, adjusted as benchmarks/param_counts.py says
    ("dlf", "mosei"): 1_224_405,
    ("late_fusion", "mosi"): 75_841,
    ("late_fusion", "mosei"): 81_217,
    ("mind", "mosi"): 40_388_107,
    ("mind", "mosei"): 14_074_891,
    ("mmcl", "mosi"): 13_197_620,
    ("mmcl", "mosei"): 13_194_548,
    ("mult", "mosi"): 1_085_251,
    ("mult", "mosei"): 1_087_771,
    ("text_only", "mosi"): 98_561,
    ("text_only", "mosei"): 98_561,
    ("tfn", "mosi"): 2_890_851,
    ("tfn", "mosei"): 2_892_363,
    # MMSA zoo (thuiar/MMSA @ a94e65d): each equals the MMSA model's count at the same config
    # (benchmarks/parity/parity_mmsa_<model>.py checks it)
    ("lmf", "mosi"): 505_071,
    ("lmf", "mosei"): 508_475,
    ("lmf", "sims"): 272_381,
    ("lf_dnn", "mosi"): 597_171,
    ("lf_dnn", "mosei"): 572_283,
    ("lf_dnn", "sims"): 635_821,
    ("ef_lstm", "mosi"): 885_605,
    ("ef_lstm", "mosei"): 1_754_725,
    ("ef_lstm", "sims"): 215_695,
    ("mfn", "mosi"): 2_172_657,
    ("mfn", "mosei"): 1_276_865,
    ("mfn", "sims"): 601_505,
    # Graph-MFN (issue 37): MMSA's count leaves out its DFG vertex networks (a plain dict there; 2,110,624 at mosi);
    # with them registered, parity_mmsa_graph_mfn.py checks 2,319,280 on both sides
    ("graph_mfn", "mosi"): 2_319_280,
    ("graph_mfn", "mosei"): 809_504,
    ("graph_mfn", "sims"): 2_978_572,
    # MMSA zoo part 2 (issue 37; thuiar/MMSA @ a94e65d): benchmarks/parity/parity_mmsa_<model>.py checks the
    # counts against MMSA's models (MFM: without MMSA's unused MFN output layers; CENET: without BERT)
    ("mctn", "mosi"): 763_778,
    ("mfm", "mosi"): 1_370_810,
    ("mfm", "mosei"): 5_840_380,
    ("mfm", "sims"): 3_443_815,
    ("cenet", "mosi"): 6_517_249,
    ("cenet", "mosei"): 6_581_761,
    ("cenet", "sims"): 7_067_905,
    ("tetfn", "mosi"): 1_254_224,
    ("tetfn", "mosei"): 1_257_360,
    ("tetfn", "sims"): 1_529_968,
    ("mtfn", "sims"): 140_957_188,   # = MMSA's MTFN at config_regression.json mtfn/sims (parity_mmsa_mtfn.py)
    ("mlmf", "sims"): 1_413_392,     # = MMSA's MLMF at config_regression.json mlmf/sims (parity_mmsa_mlmf.py)
    ("mlf_dnn", "sims"): 283_388,    # = MMSA's MLF-DNN at mlf_dnn/sims (parity_mmsa_mlf_dnn.py)
    ("tfr_net", "mosi"): 660_195,    # MMSA's own count adds its trans_*_final transformers (left out, see tfr_net.py)
    ("tfr_net", "mosei"): 679_539,
    ("tfr_net", "sims"): 724_512,
    # MMSA zoo, part 1 (issue 34): the toolkit's counts; parity against MMSA's own models (equal counts with the
    # same tiny BERT): benchmarks/results/parity.md
    ("self_mm", "mosi"): 159_332,
    ("self_mm", "mosei"): 165_668,
    ("self_mm", "sims"): 381_380,
    ("misa", "mosi"): 1_134_445,
    ("misa", "mosei"): 1_431_517,
    ("misa", "sims"): 21_661_161,
    ("mmim", "mosi"): 281_537,
    ("mmim", "mosei"): 292_289,
    ("mmim", "sims"): 373_313,
    ("mag_bert", "mosi"): 1_223_425,
    ("mag_bert", "mosei"): 1_352_449,
    ("mag_bert", "sims"): 2_324_737,
}


def _published():
    return sorted((m, p) for m in list_models() for p in get_entry(m).presets if p != "tiny")


def test_every_published_preset_is_pinned():
    assert _published() == sorted(PARAMETERS)


@pytest.mark.parametrize("model, preset", sorted(PARAMETERS))
def test_parameter_count(model, preset):
    torch.manual_seed(0)
    assert create_model(model, preset=preset).num_parameters() == PARAMETERS[(model, preset)]


#: model -> preset -> {config field: the authors' value}, each with its source
REFERENCE_SIZES = {
    # Haoyu-ha/ALMT configs/mosi.yaml and configs/mosei.yaml ("model:" section): l/a/v_input_dim,
    # l/a/v_input_length, token_len 8, token_dim / proj_input_dim 128, proj_heads 8, proj_mlp_dim 128,
    # proj_depth 1, AHL_depth 3, ahl_heads 8, ahl_dim_head 16, fusion_heads 8, fusion_layer_depth 2 (MOSI) / 4 (MOSEI)
    "almt": {
        "mosi": dict(text_dim=768, audio_dim=5, vision_dim=20, text_len=50, audio_len=375, vision_len=500,
                     token_len=8, dim=128, heads=8, mlp_dim=128, embed_depth=1, ahl_depth=3, ahl_heads=8,
                     ahl_dim_head=16, fusion_heads=8, fusion_depth=2),
        "mosei": dict(text_dim=768, audio_dim=74, vision_dim=35, text_len=50, audio_len=500, vision_len=500,
                      token_len=8, dim=128, heads=8, mlp_dim=128, embed_depth=1, ahl_depth=3, ahl_heads=8,
                      ahl_dim_head=16, fusion_heads=8, fusion_depth=4),
    },
    # pwang322/DLF config/config.json: datasetCommonParams.<dataset>.unaligned.feature_dims and
    # DLF.datasetParams.<dataset>: dst_feature_dim_nheads [50, 10], nlevels 2, conv1d_kernel_size_l/a/v
    # (5 MOSI, 3 MOSEI); the memory layers of audio and vision are 3 in trains/singleTask/model/DLF.py
    # (trans_a_mem / trans_v_mem, layers=3); lengths from the MMSA pickles the config points to (50/375/500)
    "dlf": {
        "mosi": dict(text_dim=768, audio_dim=5, vision_dim=20, dim=50, heads=10, layers=2, mem_layers=3,
                     kernel_text=5, kernel_audio=5, kernel_vision=5),
        "mosei": dict(text_dim=768, audio_dim=74, vision_dim=35, dim=50, heads=10, layers=2, mem_layers=3,
                      kernel_text=3, kernel_audio=3, kernel_vision=3),
    },
    # WeeeicheN/MInD tasks/mosi/run_mosi.sh (--embdim 512 --fusedim 128) and tasks/mosi/run_mosi.py
    # (max_seq_length 50, indim_v 47, indim_a 74; bbtf_*head 4, bbtf_*layers 3); tasks/mosei/run_mosei.sh
    # (--embdim 256 --fusedim 128) and run_mosei.py (indim_v 35, indim_a 74); models/model.py GlobalStatNet's
    # hidden width 512
    "mind": {
        "mosi": dict(text_dim=768, audio_dim=74, vision_dim=47, text_len=50, audio_len=50, vision_len=50,
                     d_model=512, fusion_dim=128, backbone_heads=4, backbone_layers=3, stat_hidden=512),
        "mosei": dict(text_dim=768, audio_dim=74, vision_dim=35, text_len=50, audio_len=50, vision_len=50,
                      d_model=256, fusion_dim=128, backbone_heads=4, backbone_layers=3, stat_hidden=512),
    },
    # smwanghhh/MMCL train.py: --n_head 4; network.py: nn.TransformerEncoderLayer with its default
    # dim_feedforward 2048. The reference is IEMOCAP-only (emb_size 128, seqlength 20, dims 300/74/35): the
    # toolkit's MOSI/MOSEI widths (d_model 256, the paper's) and inputs (MAG-BERT release) have no reference file
    "mmcl": {
        "mosi": dict(num_heads=4, ff_dim=2048, text_dim=768, audio_dim=74, vision_dim=47, seq_len=50),
        "mosei": dict(num_heads=4, ff_dim=2048, text_dim=768, audio_dim=74, vision_dim=35, seq_len=50),
    },
    # thuiar/MMSA @ a94e65d src/MMSA/config/config_regression.json: "<model>".datasetParams.<dataset> and
    # datasetCommonParams.<dataset>.unaligned (feature_dims; seq_lens, text first); hidden_dims are (text, audio,
    # video), dropouts (audio, video, text, post-fusion); LMF's text_out is hidden_dims[0] // 2 in models/
    # singleTask/LMF.py
    "lmf": {
        "mosi": dict(text_dim=768, audio_dim=5, vision_dim=20, text_hidden=128, text_out=64, audio_hidden=16,
                     vision_hidden=128, rank=3, audio_dropout=0.3, vision_dropout=0.3, text_dropout=0.3,
                     batch_size=64, lr=1e-3, factor_lr=1e-3, weight_decay=5e-3),
        "mosei": dict(text_dim=768, audio_dim=74, vision_dim=35, text_hidden=128, text_out=64, audio_hidden=16,
                      vision_hidden=128, rank=4, audio_dropout=0.2, vision_dropout=0.2, text_dropout=0.2,
                      batch_size=32, lr=1e-3, factor_lr=1e-3, weight_decay=1e-3),
        "sims": dict(text_dim=768, audio_dim=33, vision_dim=709, text_hidden=64, text_out=32, audio_hidden=16,
                     vision_hidden=64, rank=4, audio_dropout=0.2, vision_dropout=0.2, text_dropout=0.2,
                     batch_size=64, lr=2e-3, factor_lr=5e-4, weight_decay=5e-3),
    },
    "lf_dnn": {
        "mosi": dict(text_hidden=128, audio_hidden=16, vision_hidden=128, text_out=256, post_fusion_dim=128,
                     audio_dropout=0.2, post_fusion_dropout=0.2, batch_size=128, lr=1e-3, weight_decay=1e-2),
        "mosei": dict(text_hidden=128, audio_hidden=32, vision_hidden=128, text_out=128, post_fusion_dim=128,
                      audio_dropout=0.2, post_fusion_dropout=0.2, batch_size=64, lr=2e-3, weight_decay=1e-3),
        "sims": dict(text_hidden=128, audio_hidden=32, vision_hidden=128, text_out=256, post_fusion_dim=32,
                     audio_dropout=0.3, post_fusion_dropout=0.5, batch_size=128, lr=5e-3, weight_decay=5e-3),
    },
    "ef_lstm": {
        "mosi": dict(text_len=50, hidden=128, layers=4, dropout=0.5, batch_size=32, lr=1e-3, weight_decay=5e-3),
        "mosei": dict(text_len=50, hidden=256, layers=2, dropout=0.4, batch_size=128, lr=5e-3, weight_decay=1e-4),
        "sims": dict(text_len=39, hidden=32, layers=3, dropout=0.5, batch_size=128, lr=5e-4, weight_decay=1e-3),
    },
    "mfn": {
        "mosi": dict(text_hidden=256, audio_hidden=32, vision_hidden=256, mem_dim=400, attn_hidden=32,
                     attn_dropout=0.2, update_hidden=64, update_dropout=0.0, retain_hidden=256, retain_dropout=0.7,
                     write_hidden=32, write_dropout=0.5, out_hidden=128, out_dropout=0.0, batch_size=128, lr=2e-3),
        "mosei": dict(text_hidden=128, audio_hidden=32, vision_hidden=128, mem_dim=128, attn_hidden=128,
                      attn_dropout=0.2, update_hidden=128, update_dropout=0.5, retain_hidden=256,
                      retain_dropout=0.7, write_hidden=256, write_dropout=0.0, out_hidden=128, out_dropout=0.5,
                      batch_size=64, lr=5e-4, weight_decay=1e-4),
        "sims": dict(text_hidden=64, audio_hidden=16, vision_hidden=64, mem_dim=64, attn_hidden=128,
                     attn_dropout=0.2, update_hidden=128, update_dropout=0.0, retain_hidden=64, retain_dropout=0.2,
                     write_hidden=64, write_dropout=0.7, out_hidden=64, out_dropout=0.7, batch_size=32, lr=1e-3),
    },
    "graph_mfn": {
        "mosi": dict(text_hidden=256, audio_hidden=32, vision_hidden=256, mem_dim=300, inner_node_dim=64,
                     update_hidden=32, update_dropout=0.0, retain_hidden=128, retain_dropout=0.5, write_hidden=64,
                     write_dropout=0.5, out_hidden=256, out_dropout=0.0, batch_size=32, lr=2e-3, weight_decay=5e-3),
        "mosei": dict(text_hidden=64, audio_hidden=16, vision_hidden=64, mem_dim=300, inner_node_dim=128,
                      update_hidden=32, update_dropout=0.5, retain_hidden=64, retain_dropout=0.0, write_hidden=256,
                      write_dropout=0.7, out_hidden=128, out_dropout=0.7, batch_size=64, lr=2e-3, weight_decay=1e-3),
        "sims": dict(text_hidden=256, audio_hidden=32, vision_hidden=256, mem_dim=64, inner_node_dim=128,
                     update_hidden=256, update_dropout=0.5, retain_hidden=32, retain_dropout=0.2, write_hidden=32,
                     write_dropout=0.7, out_hidden=256, out_dropout=0.2, batch_size=64, lr=5e-4, weight_decay=1e-3),
    },
    # thuiar/MMSA @ a94e65d src/MMSA/config/config_regression.json "<model>".datasetParams.<dataset> (MMSA names in
    # the toolkit's fields) and datasetCommonParams.<dataset> feature_dims / seq_lens
    "mctn": {"mosi": dict(hidden=32, feature_dim=768, lr=1e-4, batch_size=32, grad_clip_norm=1.0, text_len=50)},
    "mfm": {
        "mosi": dict(text_hidden=128, audio_hidden=32, vision_hidden=128, mem_dim=64, zy_size=80, zl_size=64,
                     fy_size=64, fa_size=16, mmd_weight=100.0, recon_audio_weight=0.01, weight_decay=1e-3,
                     batch_size=64),
        "mosei": dict(text_hidden=256, attn_hidden=1278, zl_size=256, fa_size=80, mmd_weight=10.0,
                      recon_text_weight=5.0, weight_decay=5e-4, audio_dim=74, vision_dim=35),
        "sims": dict(mem_dim=128, write_hidden=256, fl_size=256, mmd_weight=200.0, recon_vision_weight=0.01,
                     weight_decay=5e-3, batch_size=128, audio_dim=33, vision_dim=709),
    },
    "cenet": {"mosi": dict(lr=1e-5, weight_decay=1e-4, grad_clip_norm=2.0, batch_size=64),
              "sims": dict(lr=2e-6, weight_decay=0.0, batch_size=32, text_len=39)},
    "tetfn": {
        "mosi": dict(audio_hidden=16, vision_hidden=64, kernel_vision=1, dim=50, heads=5, post_text_dim=32,
                     text_lr=3e-5, audio_lr=5e-4, lr=3e-4, weight_decay=0.01),
        "mosei": dict(audio_hidden=32, vision_hidden=32, vision_lr=5e-3, lr=1e-4, batch_size=32),
        "sims": dict(kernel_text=3, kernel_audio=5, kernel_vision=5, post_audio_dim=16, lr=3e-3,
                     weight_decay=1e-3),
    },
    # thuiar/MMSA@a94e65d src/MMSA/config/config_regression.json: datasetCommonParams.sims.unaligned
    # (seq_lens, feature_dims) and mtfn.datasetParams.sims (hidden_dims, text_out, post_*_dim, dropouts, M/T/A/V)
    "mtfn": {
        "sims": dict(text_dim=768, audio_dim=33, vision_dim=709, text_len=39, audio_len=400, vision_len=55,
                     text_hidden=256, audio_hidden=32, vision_hidden=256, text_out=256, post_fusion_dim=64,
                     post_text_dim=64, post_audio_dim=4, post_vision_dim=8, audio_dropout=0.2, vision_dropout=0.2,
                     weight_M=0.6, weight_T=0.4, weight_A=0.0, weight_V=1.0, lr=5e-3, batch_size=64),
    },
    # the same file: mlmf.datasetParams.sims (text_out = hidden_dims[0] // 2 as MMSA's MLMF computes it)
    "mlmf": {
        "sims": dict(text_dim=768, audio_dim=33, vision_dim=709, text_hidden=256, audio_hidden=32,
                     vision_hidden=256, text_out=128, rank=3, post_text_dim=8, post_audio_dim=4, post_vision_dim=32,
                     audio_dropout=0.3, vision_dropout=0.3, post_text_dropout=0.4, weight_M=0.2, weight_T=1.0,
                     weight_A=0.4, weight_V=0.8, lr=1e-3, factor_lr=1e-3, batch_size=128, weight_decay=5e-3,
                     text_weight_decay=1e-4, audio_weight_decay=0.0, vision_weight_decay=1e-4),
    },
    # the same file: mlf_dnn.datasetParams.sims
    "mlf_dnn": {
        "sims": dict(text_dim=768, audio_dim=33, vision_dim=709, text_hidden=64, audio_hidden=32, vision_hidden=64,
                     text_out=32, post_fusion_dim=32, post_text_dim=16, post_audio_dim=4, post_vision_dim=32,
                     audio_dropout=0.3, post_fusion_dropout=0.5, weight_M=0.6, weight_T=0.2, weight_A=0.8,
                     weight_V=0.8, lr=2e-3, batch_size=32, weight_decay=0.0, audio_weight_decay=1e-3),
    },
}


@pytest.mark.parametrize("model, preset", [(m, p) for m in REFERENCE_SIZES for p in REFERENCE_SIZES[m]])
def test_preset_sizes_equal_the_authors_configs(model, preset):
    config = resolve_config(model, preset)  # what create_model(model, preset=preset) builds
    got = {k: getattr(config, k) for k in REFERENCE_SIZES[model][preset]}
    assert got == REFERENCE_SIZES[model][preset]
