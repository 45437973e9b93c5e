"""The training recipes of the models (:data:`RECIPES`): the toolkit's defaults and the authors' protocols.

A recipe is data (TrainConfig and model-config overrides, seeds, sources), applied by ``msa train --recipe NAME``
below a config file and ``--set``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Recipe", "RECIPES", "RECIPE_ABOUT", "TOOLKIT_RECIPE", "get_recipe", "frozen_text_deviation",
           "refuses_frozen_text"]

#: recipe name -> what it is, in a few words (the console names a recipe with it)
RECIPE_ABOUT = {"toolkit": "the toolkit's defaults", "reference": "the authors' protocol"}

@dataclass(frozen=True)
class Recipe:
    """How to train a model: TrainConfig and model-config overrides, seeds and where they come from.

    ``msa train --recipe NAME`` / ``train(..., recipe=NAME)`` applies it below a config file and
    ``--set`` (precedence: TrainConfig defaults <- recipe <- config <- overrides).
    """

    # recipe name ("toolkit" = the toolkit's defaults, "reference" = the authors' published protocol)
    name: str
    # TrainConfig field -> value
    trainer: Mapping[str, Any] = field(default_factory=dict)
    # model-config field -> value (applied on top of the chosen preset)
    model: Mapping[str, Any] = field(default_factory=dict)
    # seeds the reference runs use (empty = the caller's / trainer.seed)
    seeds: tuple[int, ...] = ()
    # reference files and commit the values were read from
    source: str = ""
    # what the recipe does and where it still differs from the reference code
    notes: tuple[str, ...] = ()
    # the reference fine-tunes BERT inside the model: the run needs model.text_encoder (or allow_frozen_text)
    fine_tunes_text: bool = False


#: the default recipe of every model: the toolkit's honest protocol (checkpoint chosen on valid)
TOOLKIT_RECIPE = Recipe("toolkit", notes=("TrainConfig defaults and the model config's optimiser settings; "
                                          "checkpoint chosen on valid, test evaluated once",))

#: every word-aligned reference reads 50 steps per modality
_ALIGNED_50 = {"text": 50, "audio": 50, "vision": 50}

#: settings every reference recipe shares: the references shuffle the train set uniformly (no length buckets)
#: and train in fp32 (no autocast)
_REFERENCE_COMMON = {"bucket_by_length": False, "precision": "fp32"}

#: MMSA's training loop of its utterance- and LSTM-level models (thuiar/MMSA@a94e65d trains/singleTask/{LMF,MFN,
#: EF_LSTM,LF_DNN}.py, config/config_regression.json, run.py): no epoch cap (1000 here), best epoch on the valid L1
#: loss (KeyEval "Loss", the MAE up to float32 averaging) with a 1e-6 margin, stop after early_stop = 8 epochs
#: without improvement, constant LR, features as stored; the optimiser's lr, weight decay and batch size are the
#: model's MMSA preset values
_MMSA_TRAINER = {**_REFERENCE_COMMON, "epochs": 1000, "optimizer": "adam", "scheduler": "constant", "patience": 8,
                 "monitor": "mae", "monitor_mode": "min", "min_delta": 1e-6, "normalize": False}
#: MMSA's default seed list (run.py)
_MMSA_SEEDS = (1111, 1112, 1113, 1114, 1115)
_MMSA_SOURCE = "thuiar/MMSA@a94e65d src/MMSA/trains/singleTask/{}.py, config/config_regression.json, run.py"
_MMSA_LOOP = ("Adam at the preset's lr and weight decay (MMSA config_regression.json), batch size of the preset, "
              "constant LR, L1 loss; best epoch on the valid L1 loss with a 1e-6 margin, early stop after 8 "
              "epochs without improvement (no epoch cap: 1000 here); features not standardised")
_MMSA_TEXT_DROPOUT = ("text_dropout 0: MMSA's TextSubNet sets its dropout to 0 for its one-layer LSTM, so the "
                      "configured text dropout never acts")


def _mmsa_recipe(file: str, model: dict, *notes: str) -> Recipe:
    """A reference recipe following MMSA's training loop (:data:`_MMSA_TRAINER`) for the model in ``file``."""
    return Recipe("reference", trainer=_MMSA_TRAINER, model=model, seeds=_MMSA_SEEDS,
                  source=_MMSA_SOURCE.format(file), notes=(_MMSA_LOOP, *notes))


def _mmsa_multitask_recipe(file: str, trainer: dict, model: dict, *notes: str) -> Recipe:
    """A reference recipe of MMSA's multi-task loop (``trains/multiTask/<file>.py``, CH-SIMS): MMSA's loop, but
    the best epoch on the multi-task total loss (KeyEval "Loss" is the weighted sum of the four L1 terms)."""
    return Recipe(
        "reference", trainer={**_MMSA_TRAINER, **trainer, "monitor": "loss"}, model=model, seeds=_MMSA_SEEDS,
        source=f"thuiar/MMSA@a94e65d src/MMSA/trains/multiTask/{file}.py, config/config_regression.json "
               f"({file.lower()}, sims), run.py",
        notes=("CH-SIMS unaligned_39.pkl with regression_labels_T/A/V; features as stored (MMSA's "
               "need_normalized averages audio/vision over time, as the model's masked mean does)", *notes,
               "best epoch on the valid loss (KeyEval 'Loss') with a 1e-6 margin; early stop after 8 epochs without "
               "improvement (no epoch cap: 1000 here); seeds 1111-1115 (run.py's default)",
               "differs: MMSA logs each task's metrics against the multimodal label; the toolkit scores each "
               "unimodal head against its own label (mae_T, ...)"))


#: model name -> recipe name -> Recipe (the "toolkit" recipe is implied for every model)
RECIPES: dict[str, dict[str, Recipe]] = {
    "dlf": {"reference": Recipe(
        "reference",
        trainer={**_REFERENCE_COMMON,
                 "epochs": 1000, "batch_size": 16, "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0,
                 "scheduler": "plateau", "plateau_factor": 0.5, "plateau_patience": 5, "patience": 10,
                 "monitor": "mae", "monitor_mode": "min", "min_delta": 1e-6, "grad_accum": 10,
                 "grad_accum_sum": True, "clip_each_backward": True, "drop_partial_accum": True,
                 "grad_clip_value": 0.6, "normalize": False, "max_lengths": _ALIGNED_50},
        seeds=(1111, 1112, 1113, 1114, 1115),
        fine_tunes_text=True,
        source="pwang322/DLF@251bf2cb config/config.json, trains/singleTask/DLF.py, run.py",
        notes=("aligned_50.pkl (need_data_aligned: 50/50/50 steps), features as stored (no standardisation)",
               "Adam 1e-4 without weight decay (config.json's weight_decay is never passed to Adam), "
               "batch 16, gradient accumulation over 10 batches (update_epochs): the batch losses' gradients "
               "are summed, the running sum is value-clipped at 0.6 after every batch, and an epoch's trailing "
               "partial accumulation is discarded without a step",
               "plateau on valid L1 loss (the MAE up to float32 averaging): factor 0.5, patience 5; best epoch "
               "on valid loss with a 1e-6 margin; early stop after 10 epochs without improvement (no epoch cap: "
               "1000 here)")),
    },
    "almt": {"reference": Recipe(
        "reference",
        trainer={**_REFERENCE_COMMON,
                 "epochs": 200, "batch_size": 64, "optimizer": "adamw", "lr": 1e-4, "weight_decay": 1e-4,
                 "scheduler": "epoch_cosine", "warmup_epochs": 20, "cosine_epochs": 180, "peak_hold_epochs": 1,
                 "patience": 0,
                 "monitor": "mae", "normalize": False, "test_every_epoch": True, "test_select": "mae"},
        seeds=(7,),
        fine_tunes_text=True,
        source="Haoyu-ha/ALMT@da946107 train.py, core/scheduler.py, core/utils.py, configs/mosi.yaml",
        notes=("unaligned_50.pkl, features as stored; AdamW 1e-4, weight decay 1e-4, batch 64, 200 epochs, MSE",
               "per-epoch LR: linear warm-up from 0 over 20 epochs (0.1 x 200), then cosine over 180 (0.9 x 200)",
               "no early stopping; the reference reports the test epoch with the lowest test MAE and the best "
               "test value of each metric over epochs: recorded as the labelled best-test figures",
               "a text_encoder (BERT) trains in the same AdamW group at 1e-4, as the reference",
               "the peak LR is held one extra epoch before the cosine (peak_hold_epochs 1), as the reference's "
               "GradualWarmupScheduler hands over late",
               "seed 7 is configs/mosi.yaml's; configs/mosei.yaml uses seed 0")),
    },
    "mind": {"reference": Recipe(
        "reference",
        trainer={**_REFERENCE_COMMON,
                 "epochs": 100, "batch_size": 32, "optimizer": "adamw", "weight_decay": 0.0, "scheduler": "constant",
                 "patience": 0, "monitor": "acc2_non0", "monitor_mode": "max", "monitor_ties": True,
                 "rollback_patience": 3, "rollback_factor": 0.5, "rollback_limit": 1, "drop_last": True,
                 "normalize": False, "test_every_epoch": True, "test_select": "acc2_non0"},
        seeds=(3407,),
        fine_tunes_text=True,
        source="WeeeicheN/MInD@f6599276 trainer.py, tasks/mosi/run_mosi.sh, tasks/mosei/run_mosei.sh",
        notes=("best epoch on valid non-0 Acc-2 with >=; after 3 epochs without improvement (rollback_patience "
               "2, counted to -1) the best weights and optimiser state return and the LR halves (ExponentialLR "
               "0.5 stepped only then); the second plateau restores the best weights once more and ends the run "
               "(rollback_num 1); the epoch's test runs after the roll-back check, as the reference's",
               "AdamW at the preset's LR (3e-5 MOSI, 2e-5 MOSEI) for every parameter, BERT included, no weight "
               "decay, no clipping, 100 epochs, batch 32 with the last partial batch dropped",
               "gradient-reversal ramp over 100 x floor(N_train / 32) steps: the mosi/mosei presets hold it",
               "the test record the reference prints is the best test non-0 Acc-2 (>=): the labelled "
               "best-test figures")),
    },
    "mmcl": {"reference": Recipe(
        "reference",
        trainer={**_REFERENCE_COMMON,
                 "epochs": 200, "batch_size": 128, "optimizer": "adam", "lr": 3e-4, "scheduler": "plateau",
                 "plateau_factor": 0.95, "plateau_patience": 30, "patience": 0, "monitor": "mae",
                 "monitor_ties": True, "drop_last": True, "normalize": False, "test_every_epoch": True,
                 "test_select": "acc2_non0"},
        model={"common_block": "attention", "actor_plateau_patience": 5, "critic_plateau_patience": 5},
        seeds=(1314,),
        source="smwanghhh/MMCL@e0968100 train.py, network.py",
        notes=("the public code is IEMOCAP emotion classification; the sentiment-regression variant (L1 "
               "prediction loss, regression reward) is the toolkit's own",
               "the common block is network.py's attention-only Self_Attention (common_block=attention; the "
               "toolkit default is the paper's full transformer layer)",
               "Adam 3e-4, batch 128 (last partial batch dropped), 200 epochs; plateau on the valid prediction "
               "loss (here MAE), factor 0.95, patience 30",
               "the reference's three Adam optimisers are the optimiser's three groups model / actor / critic; "
               "plateau 0.95 / 30 on the model group, 0.95 / 5 on the actor and critic groups",
               "differs: the reference steps the actor twice per batch (prediction loss, then -Q) and the "
               "critic in between; the toolkit takes one step on the sum of the three losses",
               "the reference keeps the best test value of each score over epochs (>=): the labelled best-test "
               "figures (selected on test non-0 Acc-2)")),
    },
    "lmf": {"reference": _mmsa_recipe(
        "LMF", {"text_dropout": 0.0, "train_fusion_weights": False},
        "two Adam groups as MMSA: the three modality factors at factor_lr, the subnetworks at lr, both with the "
        "weight decay; the rank weights and output bias are in neither group (parameters()[5:]) and keep their "
        "initial values (train_fusion_weights false)",
        _MMSA_TEXT_DROPOUT,
        "audio and vision averaged over time (need_normalized): the model's masked mean (MMSA averages over "
        "the padded length)")},
    "lf_dnn": {"reference": _mmsa_recipe(
        "LF_DNN", {"text_dropout": 0.0}, _MMSA_TEXT_DROPOUT,
        "audio and vision averaged over time (need_normalized): the model's masked mean (MMSA averages over "
        "the padded length)")},
    "mfn": {"reference": _mmsa_recipe(
        "MFN", {"pool_audio_vision": True},
        "MMSA's loader averages audio and vision over time for MFN (need_normalized) and its AlignSubNet repeats "
        "the mean at every text step: pool_audio_vision true",
        "MMSA trains on word-aligned features (need_data_aligned, aligned_50.pkl): import that pickle, or build "
        "the dataset with --align words; unaligned data is aligned per sample onto the text's steps")},
    "graph_mfn": {"reference": _mmsa_recipe(
        "Graph_MFN", {"pool_audio_vision": False},
        "Adam at the preset's lr and weight decay (trains/singleTask/Graph_MFN.py), no clipping",
        "MMSA trains on word-aligned features, not averaged (need_data_aligned, need_normalized false: "
        "aligned_50.pkl): import that pickle, or build the dataset with --align words; unaligned data is aligned "
        "per sample onto the text's steps",
        "differs: MMSA never trains the DFG's multimodal vertex networks (a plain dict, not parameters); the "
        "toolkit trains them")},
    "ef_lstm": {"reference": _mmsa_recipe(
        "EF_LSTM", {},
        "MMSA trains on word-aligned features (need_data_aligned, aligned_50.pkl, not averaged): import that "
        "pickle, or build the dataset with --align words; unaligned data is aligned per sample onto the text's "
        "steps")},
    "mtfn": {"reference": _mmsa_multitask_recipe(
        "MTFN", {"batch_size": 64, "lr": 5e-3, "weight_decay": 0.0}, {},
        "Adam lr 5e-3, batch 64; groups: the text/audio/visual subnetworks with weight decay 1e-3/1e-4/1e-5 "
        "(the preset's *_weight_decay), every other parameter without (config's weight_decay 0.005 is never "
        "passed to Adam)",
        "loss 0.6·L1(M) + 0.4·L1(T) + 0·L1(A) + 1·L1(V) (the preset's weight_M/T/A/V)")},
    "mlmf": {"reference": _mmsa_multitask_recipe(
        "MLMF", {"batch_size": 128, "lr": 1e-3, "weight_decay": 5e-3},
        {"text_dropout": 0.0, "train_fusion_weights": False},
        "Adam lr 1e-3, batch 128, weight decay 5e-3; groups: the three modality factors at factor_lr 1e-3, the "
        "text/audio/visual subnetworks with weight decay 1e-4/0/1e-4 (the preset's *_weight_decay), the heads "
        "with 5e-3; the rank weights and output bias sit in a group of lr 0 (parameters()[3:5]), so they keep "
        "their initial values: train_fusion_weights false",
        "loss 0.2·L1(M) + 1·L1(T) + 0.4·L1(A) + 0.8·L1(V) (the preset's weight_M/T/A/V)")},
    "mlf_dnn": {"reference": _mmsa_multitask_recipe(
        "MLF_DNN", {"batch_size": 32, "lr": 2e-3, "weight_decay": 0.0}, {"text_dropout": 0.0},
        "Adam lr 2e-3, batch 32; groups: the text/audio/visual subnetworks with weight decay 1e-4/1e-3/1e-4 "
        "(the preset's *_weight_decay), the post-fusion MLP and the heads with the config's weight_decay 0",
        "loss 0.6·L1(M) + 0.2·L1(T) + 0.8·L1(A) + 0.8·L1(V) (the preset's weight_M/T/A/V)")},
    "tfr_net": {"reference": Recipe(
        "reference",
        trainer={**_REFERENCE_COMMON,
                 "epochs": 1000, "batch_size": 24, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-3,
                 "scheduler": "plateau", "plateau_factor": 0.1, "plateau_patience": 5, "patience": 6,
                 "monitor": "loss", "monitor_mode": "min", "min_delta": 1e-6, "grad_clip_value": 0.8,
                 "normalize": False},
        seeds=_MMSA_SEEDS,
        fine_tunes_text=True,
        source="thuiar/MMSA@a94e65d src/MMSA/trains/missingTask/TFR_NET.py, config/config_regression.json "
               "(tfr_net), data_loader.py (generate_m), run.py",
        notes=("unaligned data as stored; Adam: BERT at the preset's text_encoder_lr (2e-6 MOSI, 1e-5 MOSEI/SIMS) "
               "with weight decay 1e-4 on its weights and none on biases/LayerNorms, every other parameter at lr "
               "(1e-3 MOSI, 2e-3 MOSEI/SIMS) with weight decay 1e-3; batch 24 (SIMS 16); gradient values clipped "
               "at 0.8",
               "plateau on the valid loss, factor 0.1, patience 5; best epoch on the valid loss with a 1e-6 "
               "margin; early stop after 6 epochs without improvement (no epoch cap: 1000 here)",
               "missing features simulated in training at rate 0.2 per modality (the preset's missing_rate_*)",
               "differs: the reference zeroes the gradients every 4 batches (update_epochs) but steps the optimiser "
               "after every batch (so each step uses up to 4 batches' summed gradients); the toolkit steps on each "
               "batch's own gradients",
               "differs: the reference trains its first epoch on the prediction loss alone and draws the missing "
               "steps once per dataset (seed 1111) for every split, so its valid/test scores are on 20 %-missing "
               "inputs; the toolkit draws them per training batch and evaluates the data as given (msa robustness "
               "measures missing inputs)")),
    },
}

# --------------------------------------------------------------------------- MMSA zoo, part 1 (zooa)

#: MMSA's training loop for every model: Adam, no epoch cap (early stop after 8 epochs whose valid loss is
#: not 1e-6 below the best: KeyEval "Loss"), best valid model tested once, features as stored, seeds 1111-1115
_MMSA_COMMON = {**_REFERENCE_COMMON, "epochs": 1000, "optimizer": "adam", "patience": 8, "monitor": "loss",
                "monitor_mode": "min", "min_delta": 1e-6, "normalize": False}
_MMSA_SEEDS = (1111, 1112, 1113, 1114, 1115)
_MMSA_SOURCE = "thuiar/MMSA@a94e65d config/config_regression.json, trains/{}.py, run.py"
_MMSA_LOOP = ("Adam; valid loss (the model's prediction loss on valid, the objective's eval-mode total here) "
              "monitored with a 1e-6 margin, early stop after 8 epochs without improvement (no epoch cap: 1000 "
              "here); the best valid epoch is tested once; seeds 1111-1115 (run.py)")
#: MMSA's update_epochs accumulation (as DLF's): the batch losses' gradients summed, an epoch's trailing partial
#: accumulation discarded (zeroed at the next epoch's first batch)
_MMSA_ACCUM = {"grad_accum_sum": True, "drop_partial_accum": True}

RECIPES.update({
    "self_mm": {"reference": Recipe(
        "reference", trainer={**_MMSA_COMMON, "grad_accum": 4, **_MMSA_ACCUM}, seeds=_MMSA_SEEDS,
        fine_tunes_text=True,
        source=_MMSA_SOURCE.format("multiTask/SELF_MM"),
        notes=(_MMSA_LOOP, "unaligned features; five Adam groups (the model's param_groups): BERT 5e-5 with "
               "decay 1e-3 except biases and LayerNorms, audio and vision subnetworks 5e-3 (MOSEI vision 1e-4), "
               "the rest 1e-3; decays per dataset in the presets", "gradients of 4 batches summed into one "
               "step (update_epochs), a trailing partial accumulation discarded; ULGM updates the unimodal labels "
               "after every batch",
               "differs: MMSA initialises every training sample's labels before the first epoch; here a "
               "sample's labels are created at its first visit (the same values)"))},
    "misa": {"reference": Recipe(
        "reference", trainer={**_MMSA_COMMON, "grad_accum": 2, **_MMSA_ACCUM, "clip_each_backward": True,
                             "weight_decay": 0.0}, seeds=_MMSA_SEEDS,
        fine_tunes_text=True, source=_MMSA_SOURCE.format("singleTask/MISA"),
        notes=(_MMSA_LOOP, "unaligned features; one Adam group at 1e-4, BERT included, no weight decay "
               "(config_regression.json's weight_decay is never passed to Adam); gradient values clipped at "
               "grad_clip (0.8 MOSI/MOSEI, 1.0 SIMS); batch 16 MOSI, 64 MOSEI/SIMS",
               "gradients of 2 batches summed into one step (update_epochs), the running sum value-clipped "
               "after every batch, a trailing partial accumulation discarded"))},
    "mmim": {"reference": Recipe(
        "reference", trainer={**_MMSA_COMMON, "scheduler": "plateau", "plateau_factor": 0.5,
                              "plateau_patience": 20}, seeds=_MMSA_SEEDS, fine_tunes_text=True,
        source=_MMSA_SOURCE.format("singleTask/MMIM"),
        notes=(_MMSA_LOOP, "unaligned features; Adam groups (the model's param_groups): BERT 5e-5, MMILB "
               "networks 1e-3, the rest 1e-3, each with decay 1e-4; global gradient norm clipped at 1.0; batch "
               "32; LR halved after 20 epochs without a lower valid loss (never reached before the early stop)",
               "differs: MMSA trains the MMILB networks in a pass of their own before each epoch (on half of "
               "MOSEI's batches); here every step updates both (see models/mmim.py)"))},
    "mag_bert": {"reference": Recipe(
        "reference", trainer={**_MMSA_COMMON, "weight_decay": 0.0},
        seeds=_MMSA_SEEDS, fine_tunes_text=True, source=_MMSA_SOURCE.format("singleTask/BERT_MAG"),
        notes=(_MMSA_LOOP, "aligned_50.pkl (need_data_aligned: 50/50/50 steps, av_input=aligned); one Adam "
               "group, BERT included, at 2e-5 MOSI / 1e-5 MOSEI / 5e-5 SIMS, no weight decay; L1 loss; batch 32",
               "MMSA has no aligned CH-SIMS: the sims preset reads unaligned audio/vision averaged per text "
               "step (av_input=pooled)"))},
})


# --------------------------------------------------------------------------- MMSA zoo, part 2 (zooc)

# (the MMSA constants above)

RECIPES.update({
    "mctn": {"reference": Recipe(
        "reference", trainer={**_MMSA_COMMON, "max_lengths": _ALIGNED_50}, seeds=_MMSA_SEEDS,
        source=_MMSA_SOURCE.format("singleTask/MCTN"),
        notes=(_MMSA_LOOP, "aligned_50.pkl (need_data_aligned), features truncated to 50 steps (max_seq_len); "
               "Adam 1e-4 (init_lr) over every parameter, no weight decay; global gradient norm clipped at 1.0 "
               "(grad_clip) every step; batch 32 (the mosi preset)",
               "MMSA configures MCTN for MOSI only; on MOSEI its trainer stops each epoch after half the batches "
               "(not reproduced)")),
    },
    "mfm": {"reference": Recipe(
        "reference", trainer={**_MMSA_COMMON, "max_lengths": _ALIGNED_50}, seeds=_MMSA_SEEDS,
        source=_MMSA_SOURCE.format("singleTask/MFM"),
        notes=(_MMSA_LOOP, "aligned_50.pkl (need_data_aligned); Adam at torch's default 1e-3 (MMSA's trainer "
               "passes no learning rate: config_regression.json's learning_rate is unused) with the preset's "
               "weight decay (1e-3 MOSI, 5e-4 MOSEI, 5e-3 SIMS); batch 64 (128 SIMS); no clipping")),
    },
    "cenet": {"reference": Recipe(
        "reference", trainer=dict(_MMSA_COMMON), seeds=_MMSA_SEEDS, fine_tunes_text=True,
        source=_MMSA_SOURCE.format("singleTask/CENET"),
        notes=(_MMSA_LOOP, "unaligned features; BERT (bert-base-uncased / bert-base-chinese: model.text_encoder) "
               "fine-tuned with its embeddings fixed; Adam at 1e-5 (2e-6 SIMS) in MMSA's groups (the model's "
               "param_groups): weight decay 1e-4 (0 SIMS) on the CE module and every weight but biases and "
               "LayerNorm weights; global gradient norm clipped at 2 (max_grad_norm); L1 loss; batch 64 (32 SIMS)",
               "differs: Adam's epsilon is torch's 1e-8 (MMSA: 3e-8 MOSI, 1e-8 MOSEI, 2e-8 SIMS)")),
    },
    "tetfn": {"reference": Recipe(
        "reference", trainer={**_MMSA_COMMON, "max_lengths": _ALIGNED_50, "grad_accum": 4, **_MMSA_ACCUM},
        seeds=_MMSA_SEEDS, fine_tunes_text=True,
        source=_MMSA_SOURCE.format("multiTask/TETFN"),
        notes=(_MMSA_LOOP, "aligned_50.pkl (need_data_aligned); five Adam groups (the model's param_groups): "
               "BERT 3e-5 with decay 1e-3 except biases and LayerNorms, the audio and visual subnetworks and the "
               "rest at the preset's rates and decays (learning_rate_*/weight_decay_*)",
               "gradients of 4 batches summed into one step (update_epochs); an epoch's trailing partial "
               "accumulation is discarded (MMSA zeroes it at the next epoch's first batch)",
               "the unimodal labels are generated during training (TETFNObjective); differs: MMSA initialises "
               "every training sample's labels before the first epoch and its class centres average every training "
               "sample (zeros for those not seen yet); here a sample's labels are created at its first visit (the "
               "same values) and the centres average the samples seen so far")),
    },
})


def get_recipe(model: str, name: str = "toolkit", strict: bool = True) -> Recipe:
    """The recipe ``name`` of ``model``; "toolkit" always exists. ``strict=False`` falls back to it."""
    if name == "toolkit":
        return TOOLKIT_RECIPE
    found = RECIPES.get(model, {}).get(name)
    if found is not None:
        return found
    if not strict:
        return TOOLKIT_RECIPE
    having = sorted(m for m, r in RECIPES.items() if name in r)
    raise KeyError(f"model {model!r} has no recipe {name!r}; recipes: toolkit"
                   + (f"; {name!r} exists for {', '.join(having)}" if having else ""))


#: what a run without the text encoder its recipe fine-tunes records (config.yaml, metrics.json, benchmark rows)
FROZEN_TEXT_NOTE = ("frozen text features: the reference fine-tunes BERT inside the model; this run trained on "
                    "the dataset's precomputed text features (allow_frozen_text)")


def refuses_frozen_text(recipe: Recipe, tc: Any, model_config: Any) -> bool:
    """Whether a run must not start: its recipe fine-tunes BERT, the model has no ``text_encoder`` and
    ``tc.allow_frozen_text`` is off."""
    return (recipe.fine_tunes_text and not getattr(model_config, "text_encoder", None)
            and not getattr(tc, "allow_frozen_text", False))


def frozen_text_deviation(model: str, recipe: Recipe, tc: Any, model_config: Any) -> dict[str, Any]:
    """``{}`` when the run fine-tunes text as its recipe does; ``{"frozen_text": True, "deviation": ...}`` when the
    recipe fine-tunes BERT, the model has no ``text_encoder`` and ``tc.allow_frozen_text`` allows it; else a
    one-line MSAError naming ``--set model.text_encoder=PATH``."""
    from ..errors import MSAError

    if not recipe.fine_tunes_text or getattr(model_config, "text_encoder", None):
        return {}
    if refuses_frozen_text(recipe, tc, model_config):
        raise MSAError(f"{model}'s {recipe.name} recipe fine-tunes BERT inside the model: pass --set "
                       "model.text_encoder=PATH (a BERT folder, e.g. bert-base-uncased), or --allow-frozen-text to "
                       "train on the dataset's frozen text features (recorded as a deviation)")
    return {"frozen_text": True, "deviation": FROZEN_TEXT_NOTE}
