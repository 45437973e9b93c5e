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
}


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
