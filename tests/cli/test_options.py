"""cli/_options.py: `msa extract`, `msa dataset create` and `msa predict` share one set of extractor flags."""

from __future__ import annotations

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from msa_toolkit.cli._options import FLAGS, ExtractorFlags, extract_config
from msa_toolkit.cli.main import app, main
from msa_toolkit.extraction import ExtractConfig

runner = CliRunner()

#: the three commands that extract features, as argument paths below `msa`
EXTRACTING_COMMANDS = (("extract",), ("dataset", "create"), ("predict",))


def _options(path: tuple[str, ...]) -> set[str]:
    """Every option string (--x, --no-x) a command accepts, read from the click command."""
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}


def _extractor_options() -> set[str]:
    return {o for f in FLAGS for decl in f.decls for o in decl.split("/")}


def test_three_commands_offer_the_same_extractor_flags():
    wanted = _extractor_options()
    assert {"--audio", "--audio-model", "--opensmile-set", "--vision", "--fps", "--text", "--asr", "--asr-model",
            "--language", "--vad", "--no-vad", "--align", "--openface-bin", "--openface-csv-dir",
            "--openface-columns", "--device"} == wanted
    for path in EXTRACTING_COMMANDS:
        assert wanted <= _options(path), path
    # and --help lists them (wide terminal: no wrapping inside option names)
    helps = {path: runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"}) for path in EXTRACTING_COMMANDS}
    for path, res in helps.items():
        assert res.exit_code == 0, res.output
        for opt in sorted(wanted):
            assert opt in res.output, (path, opt)


def test_flag_help_comes_from_config_field_metadata():
    fields = {f.name: f for f in dataclasses.fields(ExtractConfig)}
    for flag in FLAGS:
        if flag.name in fields:
            assert flag.help == fields[flag.name].metadata["help"]
    assert all(f.metadata.get("help") for f in fields.values())


def test_extract_config_from_flags():
    cli_defaults = ExtractorFlags(**{f.name: f.default for f in FLAGS})
    cfg = extract_config(cli_defaults)
    assert cfg.build_spec() == ExtractConfig().build_spec()
    assert cfg.audio_params == {"feature_set": "eGeMAPSv02"} and cfg.asr_params == {"language": "en",
                                                                                    "vad_filter": True}
    off = extract_config(dataclasses.replace(cli_defaults, asr="none", vision="off", text="", fps=5.0))
    assert (off.asr, off.asr_params, off.vision, off.vision_params, off.text) == (None, {}, None, {}, None)
    with pytest.raises(typer.BadParameter):
        extract_config(dataclasses.replace(cli_defaults, audio="wav2vec2"))
    with pytest.raises(typer.BadParameter):
        extract_config(dataclasses.replace(cli_defaults, align="frames"))
    # flags not given keep the base configuration (how `msa predict` starts from the checkpoint's)
    base = ExtractConfig(audio="opensmile", audio_params={"feature_set": "ComParE_2016"}, vision=None,
                         asr_params={"model": "tiny.en"})
    assert extract_config(ExtractorFlags(), base) == base
    kept = extract_config(ExtractorFlags(audio="opensmile", language="de"), base)
    assert kept.audio_params == {"feature_set": "ComParE_2016"} and kept.asr_params == {"model": "tiny.en",
                                                                                        "language": "de"}
    assert extract_config(ExtractorFlags(audio="librosa"), base).audio_params == {}


def test_dataset_create_checks_extractor_flags(tmp_path):
    labels = tmp_path / "label.csv"
    labels.write_text("id,text,label\na_1,hi,1\n")
    (tmp_path / "videos").mkdir()
    base = ["dataset", "create", "--labels", str(labels), "--videos", str(tmp_path / "videos"), "-o",
            str(tmp_path / "ds"), "-q"]
    # wav2vec2 needs a local model folder: a usage error before anything runs
    assert main(base + ["--audio", "wav2vec2"]) == 2
    assert main(base + ["--align", "frames"]) == 2
    assert not (tmp_path / "ds").exists()
