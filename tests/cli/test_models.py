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


def test_models_show_prints_the_help_of_every_field():
    """Every DLF config field's row carries its help text from the field metadata (no empty description)."""
    import dataclasses

    from msa_toolkit._fields import field_helps
    from msa_toolkit.models import get_entry

    r = runner.invoke(app, ["models", "show", "dlf"], env={"COLUMNS": "1000"})  # wide: no wrapped cells
    assert r.exit_code == 0, r.output
    rows = {}
    for line in r.output.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == 4:
            rows[cells[0]] = cells[3]
    helps = field_helps(get_entry("dlf").config_cls)
    for f in dataclasses.fields(get_entry("dlf").config_cls):
        assert rows.get(f.name), f"no description printed for field {f.name!r}"
        assert rows[f.name] == helps[f.name]


def test_no_module_reads_field_help_from_source_text():
    """Field help comes from dataclass metadata: nothing in msa_toolkit parses source with inspect.getsource."""
    from pathlib import Path

    import msa_toolkit

    root = Path(msa_toolkit.__file__).parent
    users = [str(p.relative_to(root)) for p in sorted(root.rglob("*.py")) if "getsource" in p.read_text("utf-8")]
    assert users == []


def test_every_config_field_has_its_own_help():
    """Each registered model config, TrainConfig and ExtractConfig documents every field in its metadata."""
    import dataclasses

    from msa_toolkit._fields import HELP_KEY
    from msa_toolkit.extraction.config import ExtractConfig
    from msa_toolkit.models import get_entry
    from msa_toolkit.training.config import TrainConfig

    for cls in [TrainConfig, ExtractConfig, *(get_entry(n).config_cls for n in list_models())]:
        undocumented = [f.name for f in dataclasses.fields(cls) if not f.metadata.get(HELP_KEY, "").strip()]
        assert undocumented == [], f"{cls.__name__}: fields without help {undocumented}"
