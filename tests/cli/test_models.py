from typer.testing import CliRunner

from msa_toolkit.cli.main import app, main
from msa_toolkit.models import list_models

runner = CliRunner()


def test_models_lists_every_registered_model():
    r = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    for name in list_models():
        assert name in r.output
    assert "tiny" in r.output


def test_models_show_fields_and_presets():
    r = runner.invoke(app, ["models", "show", "late_fusion", "--preset", "tiny"], env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "hidden" in r.output and "grad_clip_norm" in r.output and "preset tiny" in r.output
    assert "per-modality hidden width" in r.output  # the field's comment
    assert main(["models", "show", "no_such_model"]) == 2
