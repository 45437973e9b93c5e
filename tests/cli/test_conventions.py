"""CLI conventions shared by every `msa` command: completion, help text, short flags, the dataset argument,
messages that name flags, and the printed checkpoint paths (docs/cli.md)."""

import json
import os
import shlex
import shutil
import subprocess
import sys

import click
import pytest
import typer.main
from typer.testing import CliRunner

from msa_toolkit.cli.main import app

runner = CliRunner()

#: the one meaning of each short flag (docs/cli.md keeps the same table)
SHORT_FLAGS = {"-h": "--help", "-o": "--out", "-d": "--data", "-c": "--config", "-m": "--model", "-p": "--preset",
               "-s": "--set", "-q": "--quiet", "-w": "--workers", "-l": "--labels", "-v": "--videos",
               "-t": "--transcripts", "-f": "--format"}


def _commands(cmd: click.Command = None, path: tuple[str, ...] = (), parent: click.Context = None):
    """(path, click context) of the root and of every command and subcommand."""
    cmd = cmd or typer.main.get_command(app)
    ctx = click.Context(cmd, info_name=path[-1] if path else "msa", parent=parent, **(cmd.context_settings or {}))
    yield path, ctx
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name), ctx)


def _params(ctx: click.Context):
    return ctx.command.get_params(ctx)


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    from msa_toolkit.data.synthetic import make_synthetic_dataset

    path = tmp_path_factory.mktemp("conv") / "ds"
    make_synthetic_dataset(path, n_train=16, n_valid=8, n_test=8, dims=(8, 4, 4), lengths=(6, 8, 8), seed=0)
    return path


def _msa(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "msa_toolkit", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


def test_show_completion_prints_a_completion_script():
    # click's env-var way works anywhere; --show-completion detects the calling shell (here: bash)
    r = _msa(env={"_MSA_COMPLETE": "source_bash"})
    assert r.returncode == 0 and "_msa_completion" in r.stdout, r.stderr
    if shutil.which("bash"):
        r = subprocess.run(["bash", "-c", f"{shlex.quote(sys.executable)} -m msa_toolkit --show-completion; true"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "_msa_completion" in r.stdout and "complete " in r.stdout, r.stderr
    assert "--install-completion" in _msa("--help").stdout


def test_completion_completes_commands_and_flags():
    env = {"_MSA_COMPLETE": "complete_bash", "COMP_WORDS": "msa tr", "COMP_CWORD": "1"}
    assert _msa(env=env).stdout.split() == ["train"]
    env = {"_MSA_COMPLETE": "complete_bash", "COMP_WORDS": "msa train --res", "COMP_CWORD": "2"}
    assert _msa(env=env).stdout.split() == ["--resume"]


class _Ctx:
    """What a completion function reads of the click context: the parameters parsed so far."""

    def __init__(self, **params):
        self.params = params


def test_completion_functions_complete_models_presets_and_recipes():
    """--model, --preset and --recipe complete their values (issue 32); the presets and recipes follow the model."""
    from msa_toolkit.cli._options import complete_model, complete_models, complete_preset, complete_recipe
    from msa_toolkit.models import get_entry, list_models

    assert complete_model("") == sorted(list_models()) and complete_model("mu") == ["mult"]
    assert complete_models("dlf,a") == ["dlf,almt"] and "dlf,text_only" in complete_models("dlf,")
    assert "dlf,dlf" not in complete_models("dlf,")
    assert complete_preset(_Ctx(model="dlf"), "") == sorted(get_entry("dlf").presets)
    assert complete_preset(_Ctx(name="almt"), "mo") == ["mosei", "mosi"]  # `msa models show NAME --preset`
    assert "tiny" in complete_preset(_Ctx(), "")  # no model yet: every model's presets
    assert complete_recipe(_Ctx(model="dlf"), "") == ["reference", "toolkit"]
    assert complete_recipe(_Ctx(model="text_only"), "") == ["toolkit"]  # a baseline has no reference recipe
    assert complete_recipe(_Ctx(models="text_only,almt"), "r") == ["reference"]


@pytest.mark.parametrize("words, expected", [
    ("msa train --model dl", ["dlf"]),
    ("msa train -m dlf --recipe ", ["reference", "toolkit"]),
    ("msa benchmark --models mind --preset mos", ["mosei", "mosi"]),
    ("msa models show ti", []),
    ("msa models show t", ["tetfn", "text_only", "tfn", "tfr_net"]),
])
def test_the_commands_complete_model_preset_and_recipe_values(words, expected):
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    env = {"_MSA_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    assert _msa(env=env).stdout.split() == expected


@pytest.mark.parametrize("path", [p for p, _ in _commands()], ids=lambda p: " ".join(p) or "msa")
def test_help_shows_no_bool_or_python_type_metavars(path):
    r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    for odd in ("<bool>", "BOOLEAN", "list[str]", "<str>...", "TEXT"):
        assert odd not in r.output, f"msa {' '.join(path)} --help shows {odd}:\n{r.output}"


def test_every_short_flag_has_one_meaning_across_commands():
    meaning: dict[str, set[str]] = {}
    for _, ctx in _commands():
        for p in _params(ctx):
            if p.param_type_name != "option":
                continue
            longs = [o for o in (*p.opts, *p.secondary_opts) if o.startswith("--")]
            for short in (o for o in (*p.opts, *p.secondary_opts) if not o.startswith("--")):
                meaning.setdefault(short, set()).update(longs[:1])
    clashes = {s: ls for s, ls in meaning.items() if len(ls) != 1}
    assert not clashes, f"short flags with several meanings: {clashes}"
    assert {s: next(iter(ls)) for s, ls in meaning.items()} == SHORT_FLAGS


def test_data_option_is_accepted_by_every_command_that_reads_a_dataset(ds, tmp_path):
    for path, ctx in _commands():
        if {p.name for p in _params(ctx)} & {"data", "dataset"}:
            assert {"--data", "-d"} <= {o for p in _params(ctx) for o in p.opts}, path
    by_arg = runner.invoke(app, ["dataset", "info", str(ds), "--json"])
    by_opt = runner.invoke(app, ["dataset", "info", "--data", str(ds), "--json"])
    assert by_arg.exit_code == 0 and by_opt.exit_code == 0, (by_arg.output, by_opt.output)
    assert json.loads(by_arg.stdout) == json.loads(by_opt.stdout)
    assert runner.invoke(app, ["dataset", "validate", "-d", str(ds)]).exit_code == 0
    out = tmp_path / "x.pkl"
    assert runner.invoke(app, ["dataset", "export", "-d", str(ds), "-o", str(out)]).exit_code == 0 and out.is_file()
    assert runner.invoke(app, ["dataset", "info"]).exit_code == 2
    assert runner.invoke(app, ["dataset", "info", str(ds), "--data", str(tmp_path)]).exit_code == 2


def test_messages_name_cli_flags_not_python_keywords(ds, tmp_path):
    from msa_toolkit.cli.main import main
    from msa_toolkit.data.synthetic import make_synthetic_dataset
    from msa_toolkit.errors import DatasetError

    args = ["train", "-m", "text_only", "-p", "tiny", "-d", str(ds), "-o", str(tmp_path / "run"), "-q",
            "--epochs", "1", "--device", "cpu", "--set", "trainer.plots=false"]
    assert main(args) == 0
    r = runner.invoke(app, args)
    assert r.exit_code != 0
    message = str(r.exception)
    assert "pass --resume" in message and "resume=True" not in message
    with pytest.raises(DatasetError, match="pass --overwrite"):
        for _ in range(2):
            make_synthetic_dataset(tmp_path / "copy", n_train=4, n_valid=2, n_test=2, dims=(4, 2, 2),
                                   lengths=(3, 3, 3), overwrite=False)


def test_train_prints_the_checkpoint_of_every_seed(ds, tmp_path):
    base = ["train", "-m", "text_only", "-p", "tiny", "-d", str(ds), "-q", "--epochs", "1", "--device", "cpu",
            "--set", "trainer.plots=false"]
    one = runner.invoke(app, [*base, "-o", str(tmp_path / "one")])
    assert one.exit_code == 0, one.output
    assert f"checkpoint: {tmp_path / 'one' / 'seed_1' / 'best.safetensors'}" in one.stdout
    many = runner.invoke(app, [*base, "-o", str(tmp_path / "many"), "--seeds", "1,2"])
    assert many.exit_code == 0, many.output
    for seed in (1, 2):
        path = tmp_path / "many" / f"seed_{seed}" / "best.safetensors"
        assert path.is_file() and f"seed {seed}: {path}" in many.stdout


def _documented_short_flags() -> dict[str, set[str]]:
    """docs/cli.md's short-flag table: short flag -> the commands listed for it ("all" left out)."""
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "cli.md").read_text()
    table: dict[str, set[str]] = {}
    for line in doc.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("-") or cells[0].startswith("--") or cells[2] == "all":
            continue
        names: set[str] = set()
        for item in cells[2].split(","):
            words = item.split()
            head, subs = " ".join(words[:-1]), words[-1].split("/")
            names.update(f"{head} {s}".strip() for s in subs)
        table[cells[0]] = names
    return table


def test_docs_short_flag_table_lists_every_command_that_has_the_flag():
    actual: dict[str, set[str]] = {}
    for path, ctx in _commands():
        for p in _params(ctx):
            for short in (o for o in (*p.opts, *p.secondary_opts) if not o.startswith("--")):
                if path:
                    actual.setdefault(short, set()).add(" ".join(path))
    documented = _documented_short_flags()
    assert set(documented) == set(SHORT_FLAGS) - {"-h"}
    for short, names in documented.items():
        assert names == actual[short], f"docs/cli.md, {short}: lists {sorted(names)}, CLI: {sorted(actual[short])}"


@pytest.mark.parametrize("path", [p for p, _ in _commands()], ids=lambda p: " ".join(p) or "msa")
def test_help_cuts_nothing_off_in_an_80_column_terminal(path):
    # rich shortens what does not fit its column with "…": an option name or an example would be unreadable
    r = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80", "TERM": "dumb", "NO_COLOR": "1"})
    assert r.exit_code == 0, r.output
    assert "…" not in r.output, f"msa {' '.join(path)} --help cuts text off at 80 columns:\n{r.output}"


def test_help_paragraphs_are_rewrapped_to_the_terminal_not_to_the_docstring():
    from msa_toolkit.cli.main import reflow_help

    assert reflow_help("Summary.\n\n    One sentence\n    over two lines.\n\n    - a\n    - b") == \
        "Summary.\n\nOne sentence over two lines.\n\n- a\n- b"
    # the tune docstring breaks this sentence after "pruned from": the help joins it (rich kept the break)
    r = runner.invoke(app, ["tune", "--help"], env={"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"})
    assert "poor trials are pruned from their per-epoch validation values" in r.output, r.output
