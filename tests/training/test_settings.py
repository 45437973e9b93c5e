"""Every training setting documented from the code (issue 32): the generated trainer table of docs/cli.md and
what `msa train --show-config` resolves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from msa_toolkit._fields import field_helps
from msa_toolkit.errors import MSAError
from msa_toolkit.training.config import TrainConfig
from msa_toolkit.training.settings import DOC_BEGIN, DOC_END, show_config, trainer_settings_markdown, with_trainer_table

CLI_DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


def test_docs_cli_trainer_table_is_the_generated_one():
    text = CLI_DOC.read_text()
    assert DOC_BEGIN in text and DOC_END in text
    assert with_trainer_table(text) == text, ("docs/cli.md's trainer settings table is stale: run "
                                              "`python -m msa_toolkit.training.settings docs/cli.md`")


def test_the_table_has_every_trainer_setting_with_default_and_help():
    table = trainer_settings_markdown()
    helps = field_helps(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        row = next(line for line in table.splitlines() if line.startswith(f"| `trainer.{f.name}` |"))
        assert helps[f.name].split("|")[0].strip() in row
    assert "| `trainer.epochs` | `30` |" in table and "adam \\| adamw \\| sgd" in table  # a | in help is escaped
    with pytest.raises(MSAError, match="markers"):
        with_trainer_table("no markers here")


def test_show_config_resolves_recipe_preset_and_overrides_without_data():
    view = show_config("dlf", "mosi", overrides=["trainer.epochs=3", "model.dim=40"], recipe="reference")
    assert (view.model, view.preset, view.recipe) == ("dlf", "mosi", "reference")
    assert view.seeds == [1111, 1112, 1113, 1114, 1115]
    trainer = {r.name: r for r in view.trainer_rows}
    assert [r.name for r in view.trainer_rows] == [f.name for f in dataclasses.fields(TrainConfig)]
    assert (trainer["epochs"].value, trainer["epochs"].default) == (3, 30)
    assert trainer["grad_accum"].value == 10 and trainer["grad_accum"].help  # the recipe's
    model = {r.name: r for r in view.model_rows}
    assert model["dim"].value == 40 and model["dim"].help
    with pytest.raises(MSAError, match="unknown trainer setting"):
        show_config("dlf", overrides=["trainer.nope=1"])
