"""Model configs are checked before anything is allocated: sizes, probabilities, constraints, parameter count."""

from __future__ import annotations

import pytest

from msa_toolkit.models import create_model, list_models
from msa_toolkit.models._registry import MAX_PARAMETERS


@pytest.mark.parametrize("override, message", [
    ({"dim": -4}, "model.dim must be a positive integer, got -4"),
    ({"heads": 0}, "model.heads must be a positive integer, got 0"),
    ({"dropout": 1.5}, r"model.dropout is a probability and must be in \[0, 1\), got 1.5"),
    ({"attn_dropout": -0.1}, r"model.attn_dropout is a probability"),
    ({"lr": -1e-3}, "model.lr must be >= 0"),
    ({"weight_decay": -1e-4}, "model.weight_decay must be >= 0"),
    ({"out_dropout": float("nan")}, "model.out_dropout must be a finite number"),
    ({"dim": 7}, "dim 7 is not divisible by heads 2"),
])
def test_impossible_values_are_refused_with_the_field_named(override, message):
    with pytest.raises(ValueError, match=message):
        create_model("dlf", "tiny", **override)


def test_a_model_over_the_parameter_limit_is_refused_before_allocation():
    """The size is counted on the meta device: a config of ~2.6 T parameters is refused by its count (allocating
    it would fail with an out-of-memory error instead, after trying to take ~10 TB)."""
    with pytest.raises(ValueError, match=f"more than the {MAX_PARAMETERS:,}"):
        create_model("dlf", "tiny", dim=100_000, heads=10)


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_its_presets_within_the_checks(name):
    from msa_toolkit.models import get_entry

    for preset in get_entry(name).presets:
        if preset == "tiny":
            create_model(name, preset)


def test_the_cli_refuses_bad_model_settings_in_one_line(tmp_path, capsys):
    from msa_toolkit.cli.main import main
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    ds = make_synthetic_dataset(tmp_path / "ds", n_train=8, n_valid=4, n_test=4)
    for setting, message in (("model.dim=-4", "dim must be a positive integer"),
                             ("model.dropout=1.5", "dropout is a probability"),
                             ("model.heads=0", "heads must be a positive integer"),
                             ("model.dim=7", "not divisible by heads")):
        out = tmp_path / "run"
        assert main(["train", "--model", "dlf", "--preset", "tiny", "--data", str(ds.path), "-o", str(out),
                     "--epochs", "1", "-q", "--set", setting]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert not out.exists()  # nothing written
