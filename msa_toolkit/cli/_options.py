"""Command-line options shared by several `msa` commands (in the spirit of spaCy's ``cli/_util.py``).

The extractor flags (``--asr``, ``--asr-model``, ``--language``, ``--vad``, ``--text``, ``--audio``,
``--audio-model``, ``--opensmile-set``, ``--vision``, ``--fps``, ``--align``) are declared once
here. :func:`extractor_options` adds them to a command, which receives them as one
:class:`ExtractorFlags`; :func:`extract_config` turns that into an
:class:`~msa_toolkit.extraction.ExtractConfig`. `msa extract`, `msa dataset create` and
`msa predict` all use them, so the three accept the same flags. The help of a flag that sets
an ExtractConfig field is that field's ``help`` metadata.

This module imports only typer and the light ``extraction.config`` module (no numpy, no
models), so ``msa --help`` stays instant.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, TypeVar

import typer

from ..extraction.config import ALIGN_CHOICES, COMPLETE, REQUIRE_CHOICES, ExtractConfig, field_help

F = TypeVar("F", bound=Callable[..., Any])

#: exit status of a run stopped by Ctrl-C / SIGTERM (128 + SIGINT, as shells report it)
INTERRUPTED_EXIT = 130
#: exit status of a run that finished but wrote an output somewhere other than asked (a fallback file in
#: the temp folder, e.g. the disk filled) or could not write it: sysexits' EX_CANTCREAT
OUTPUT_FALLBACK_EXIT = 73

#: values of --asr/--text/--audio/--vision that switch the stage off
DISABLED_VALUES: tuple[str, ...] = ("none", "off", "")
#: the name of the parameter a command declares to receive the extractor flags
FLAGS_PARAMETER = "extractors"
#: the --help panel the extractor flags are listed under
HELP_PANEL = "Extractors"


def stage_name(value: Optional[str]) -> Optional[str]:
    """An extractor name, or None for a switched-off stage (none/off/empty)."""
    return None if value is None or value.strip().lower() in DISABLED_VALUES else value


def text_choice(value: str) -> tuple[Optional[str], dict[str, Any]]:
    """``--text``: an extractor name (minilm, transformer), else a transformers model id / local folder."""
    if stage_name(value) is None:
        return None, {}
    from ..extractors.base import list_extractors

    if value in list_extractors("text"):
        return value, {}
    return "transformer", {"model": value}


@dataclass(frozen=True)
class ExtractorFlags:
    """The extractor flags of one command line; None means the flag was not given (default: the base config)."""

    # --asr: speech recogniser name or none
    asr: Optional[str] = None
    # --asr-model: faster-whisper model folder or cached name
    asr_model: Optional[str] = None
    # --language: spoken language code
    language: Optional[str] = None
    # --vad/--no-vad: voice-activity filtering before Whisper
    vad: Optional[bool] = None
    # --text: text extractor name, transformers model id / folder, or none
    text: Optional[str] = None
    # --audio: acoustic extractor name or none
    audio: Optional[str] = None
    # --audio-model: local wav2vec2/HuBERT folder
    audio_model: Optional[Path] = None
    # --opensmile-set: openSMILE feature set
    opensmile_set: Optional[str] = None
    # --vision: visual extractor name or none
    vision: Optional[str] = None
    # --fps: video frames analysed per second
    fps: Optional[float] = None
    # --openface-bin: OpenFace 2.0 FeatureExtraction binary (--vision openface)
    openface_bin: Optional[Path] = None
    # --openface-csv-dir: folder of existing OpenFace CSVs (--vision openface_csv)
    openface_csv_dir: Optional[Path] = None
    # --openface-columns: OpenFace column preset, groups joined with + or a comma-separated column list
    openface_columns: Optional[str] = None
    # --align: none or words
    align: Optional[str] = None
    # --device: cpu, cuda or auto: where Whisper, transformers text encoders and wav2vec2 run
    device: Optional[str] = None

    def given(self) -> bool:
        """True when at least one flag was given."""
        return any(v is not None for v in dataclasses.astuple(self))


@dataclass(frozen=True)
class _Flag:
    """How one ExtractorFlags field appears on the command line."""

    # the ExtractorFlags field (and command parameter) it fills
    name: str
    # the type click parses the value to
    annotation: Any
    # default of `msa extract` / `msa dataset create` (predict's defaults are all None)
    default: Any
    # option declarations, e.g. ("--asr",) or ("--vad/--no-vad",)
    decls: tuple[str, ...]
    # the help text
    help: str
    # further typer.Option arguments (min=..., exists=..., file_okay=...)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


_DEFAULTS = ExtractConfig()

#: every extractor flag, in the order --help lists them
FLAGS: tuple[_Flag, ...] = (
    _Flag("audio", Optional[str], _DEFAULTS.audio, ("--audio",), field_help("audio")),
    _Flag("audio_model", Optional[Path], None, ("--audio-model",),
          "Local wav2vec2/HuBERT folder (needed for --audio wav2vec2).", {"exists": True, "file_okay": False}),
    _Flag("opensmile_set", Optional[str], "eGeMAPSv02", ("--opensmile-set",), "eGeMAPSv02 or ComParE_2016."),
    _Flag("vision", Optional[str], _DEFAULTS.vision, ("--vision",), field_help("vision")),
    _Flag("fps", Optional[float], None, ("--fps",), "Video frames analysed per second.", {"min": 0.1}),
    _Flag("openface_bin", Optional[Path], None, ("--openface-bin",),
          "OpenFace 2.0 FeatureExtraction binary for --vision openface (default: $MSA_OPENFACE_BIN or PATH).",
          {"dir_okay": False}),
    _Flag("openface_csv_dir", Optional[Path], None, ("--openface-csv-dir",),
          "Folder of existing OpenFace CSVs (<clip>.csv) for --vision openface_csv (default: next to each clip).",
          {"exists": True, "file_okay": False}),
    _Flag("openface_columns", Optional[str], None, ("--openface-columns",),
          "OpenFace columns: aus (35), aus+pose+gaze (49, default), mmsa_fet (177), full (709), "
          "groups joined with + or a comma-separated column list."),
    _Flag("text", Optional[str], _DEFAULTS.text, ("--text",), field_help("text")),
    _Flag("asr", Optional[str], _DEFAULTS.asr, ("--asr",), field_help("asr")),
    _Flag("asr_model", Optional[str], None, ("--asr-model",),
          "faster-whisper model: local CTranslate2 folder or a name in the local cache (default: bundled tiny.en)."),
    _Flag("language", Optional[str], "en", ("--language",), "Spoken language code."),
    _Flag("vad", Optional[bool], True, ("--vad/--no-vad",), "Voice-activity filtering before Whisper."),
    _Flag("align", Optional[str], _DEFAULTS.align, ("--align",), field_help("align")),
    _Flag("device", Optional[str], None, ("--device",),
          "cpu | cuda | auto: where Whisper (CTranslate2, float16 on cuda), transformers text encoders and "
          "wav2vec2 run (default cpu). The features' identity and cache keys do not change."),
)


def _option(flag: _Flag, from_checkpoint: bool) -> Any:
    """The typer.Option of one flag; with ``from_checkpoint`` it defaults to None (= keep the checkpoint's)."""
    default = None if from_checkpoint else flag.default
    return typer.Option(default, *flag.decls, help=flag.help, rich_help_panel=HELP_PANEL,
                        show_default=not from_checkpoint and default is not None, **flag.extra)


def extractor_options(from_checkpoint: bool = False) -> Callable[[F], F]:
    """Decorator: give a command every extractor flag in place of its ``extractors`` parameter.

    The command declares ``extractors: ExtractorFlags`` (anywhere in its signature); typer sees
    the flags of :data:`FLAGS` there instead, and the command is called with them packed into
    one :class:`ExtractorFlags`. ``from_checkpoint`` (``msa predict``) makes every flag default
    to None, i.e. "as the checkpoint's FeatureSpec says".
    """
    def decorate(command: F) -> F:
        sig = inspect.signature(command, eval_str=True)
        params = list(sig.parameters.values())
        at = [p.name for p in params].index(FLAGS_PARAMETER)
        flags = [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=f.annotation,
                                   default=_option(f, from_checkpoint)) for f in FLAGS]
        params[at:at + 1] = flags

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            packed = ExtractorFlags(**{f.name: kwargs.pop(f.name) for f in FLAGS})
            return command(**kwargs, **{FLAGS_PARAMETER: packed})

        # typer reads the parameters from __signature__ and resolves types through __annotations__
        wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        wrapper.__annotations__["return"] = sig.return_annotation
        return wrapper  # type: ignore[return-value]

    return decorate


def _stage(current: Optional[str], current_params: Mapping[str, Any], given: Optional[str],
           given_params: Mapping[str, Any] | None = None) -> tuple[Optional[str], dict[str, Any]]:
    """One stage's (name, params): a given name replaces the current one (its params start afresh
    unless it names the same extractor); ``given_params`` then update the params."""
    name, params = current, dict(current_params)
    if given is not None:
        name = stage_name(given)
        if name != current:
            params = {}
    if name is None:
        return None, {}
    params.update(given_params or {})
    return name, params


def extract_config(flags: ExtractorFlags, base: ExtractConfig | None = None) -> ExtractConfig:
    """The ExtractConfig the extractor flags ask for; flags not given keep ``base`` (default ExtractConfig()).

    Raises ``typer.BadParameter`` for an --align value other than none/words, and for
    ``--audio wav2vec2`` without ``--audio-model`` (unless ``base`` already names the model folder).
    """
    base = base if base is not None else ExtractConfig()
    if flags.align is not None and flags.align not in ALIGN_CHOICES:
        raise typer.BadParameter("must be 'none' or 'words'", param_hint="--align")
    asr_params = {k: v for k, v in (("language", flags.language), ("vad_filter", flags.vad),
                                    ("model", flags.asr_model or None)) if v is not None}
    asr, asr_params = _stage(base.asr, base.asr_params, flags.asr, asr_params)
    audio, audio_params = _stage(base.audio, base.audio_params, flags.audio)
    if audio == "opensmile" and flags.opensmile_set is not None:
        audio_params["feature_set"] = flags.opensmile_set
    elif audio == "wav2vec2":
        if flags.audio_model is not None:
            audio_params["model"] = str(flags.audio_model)
        elif not audio_params.get("model"):
            raise typer.BadParameter("--audio wav2vec2 needs --audio-model FOLDER", param_hint="--audio-model")
    vision, vision_params = _stage(base.vision, base.vision_params, flags.vision, _vision_params(flags))
    _check_openface_flags(flags, vision)
    text, text_params = base.text, dict(base.text_params)
    if flags.text is not None:
        text, text_params = text_choice(flags.text)
    config = ExtractConfig(asr=asr, asr_params=asr_params, text=text, text_params=text_params, audio=audio,
                           audio_params=audio_params, vision=vision, vision_params=vision_params,
                           align=flags.align if flags.align is not None else base.align)
    if flags.device is None:
        return config
    from ..extraction.runner import DEVICES, on_device

    if flags.device not in DEVICES:
        raise typer.BadParameter(f"must be one of {', '.join(DEVICES)}", param_hint="--device")
    return on_device(config, flags.device)


#: the --vision choices that read OpenFace output
OPENFACE_VISION = ("openface", "openface_csv")


def _vision_params(flags: ExtractorFlags) -> dict[str, Any]:
    """The vision extractor parameters the flags set (--fps and the OpenFace flags)."""
    params: dict[str, Any] = {}
    if flags.fps:
        params["fps"] = flags.fps
    if flags.openface_bin is not None:
        params["binary"] = str(flags.openface_bin)
    if flags.openface_csv_dir is not None:
        params["csv_dir"] = str(flags.openface_csv_dir)
    if flags.openface_columns is not None:
        params["columns"] = flags.openface_columns
    return params


def _check_openface_flags(flags: ExtractorFlags, vision: Optional[str]) -> None:
    """An OpenFace flag with another --vision is a mistake worth a clear message, not a silent no-op."""
    for value, hint, needs in ((flags.openface_bin, "--openface-bin", ("openface",)),
                               (flags.openface_csv_dir, "--openface-csv-dir", ("openface_csv",)),
                               (flags.openface_columns, "--openface-columns", OPENFACE_VISION)):
        if value is not None and vision not in needs:
            raise typer.BadParameter(f"only applies to --vision {' / '.join(needs)} (got --vision {vision or 'none'})",
                                     param_hint=hint)


# ---- --require -----------------------------------------------------------------------------------
def require_option() -> Any:
    """The ``--require STAGE`` option (repeatable, or a comma list) of `msa extract`."""
    return typer.Option(None, "--require", metavar="STAGE", help=field_help("require"),
                        rich_help_panel=HELP_PANEL)


def parse_require(values: Optional[list[str]], config: ExtractConfig) -> tuple[str, ...]:
    """``--require`` values (repeated and/or comma-separated) as ExtractConfig.require; a bad stage
    name or a switched-off stage is a ``typer.BadParameter``."""
    stages = tuple(dict.fromkeys(s.strip().lower() for v in values or () for s in v.split(",") if s.strip()))
    for stage in stages:
        if stage not in REQUIRE_CHOICES:
            raise typer.BadParameter(f"unknown stage {stage!r} (choose from {', '.join(REQUIRE_CHOICES)})",
                                     param_hint="--require")
        if stage != COMPLETE and not getattr(config, stage):
            raise typer.BadParameter(f"the {stage} stage is switched off (--{stage} none)", param_hint="--require")
    return stages


# -- the dataset directory: DATASET or --data/-d in every command that reads one -------------------------------

#: --data/-d names the dataset directory in every command; the `msa dataset` subcommands also take it as DATASET
DATASET_HELP = "Native dataset directory"


def dataset_argument() -> Any:
    """The optional positional DATASET of the `msa dataset` subcommands (``--data/-d`` works too)."""
    return typer.Argument(None, exists=True, file_okay=False, metavar="DATASET", show_default=False,
                          help=f"{DATASET_HELP} (or --data/-d)")


def data_option(required: bool = False, show_config: bool = False) -> Any:
    """``--data/-d DIR``: the dataset directory; optional where a DATASET argument may give it instead.
    ``show_config``: required, except by --show-config (the command checks it)."""
    if show_config:
        return typer.Option(None, "--data", "-d", exists=True, file_okay=False, show_default=False,
                            help=f"{DATASET_HELP} (required unless --show-config).")
    return typer.Option(... if required else None, "--data", "-d", exists=True, file_okay=False,
                        help=f"{DATASET_HELP}." if required else f"{DATASET_HELP} (same as DATASET)")


def dataset_path(positional: Optional[Path], option: Optional[Path]) -> Path:
    """The dataset directory given either as DATASET or as ``--data/-d`` (exactly one of them)."""
    if positional is not None and option is not None and positional != option:
        raise typer.BadParameter(f"two datasets given: {positional} and --data {option}; give one",
                                 param_hint="DATASET / --data")
    path = positional if positional is not None else option
    if path is None:
        raise typer.BadParameter("missing the dataset directory: give DATASET or --data DIR",
                                 param_hint="DATASET / --data")
    return path


# ---- the run options of `msa train` and `msa tune` -------------------------------------------------------------
# (declared once: the two commands resolve a run's model, preset, recipe and settings the same way, training/plan.py)

def model_option() -> Any:
    """``--model/-m NAME``: a registered model (optional: a config's ``model.name`` may give it)."""
    return typer.Option(None, "--model", "-m", help="Registered model name (see `msa models`).",
                        autocompletion=complete_model)


def preset_option() -> Any:
    """``--preset/-p NAME``: a named model preset."""
    return typer.Option(None, "--preset", "-p", help="Named model preset (e.g. mosi, tiny).",
                        autocompletion=complete_preset)


def recipe_option() -> Any:
    """``--recipe NAME``: a training recipe (training/recipes.py)."""
    return typer.Option(None, "--recipe", help="Training recipe: toolkit (default: checkpoint chosen on valid) | "
                                               "reference (the authors' protocol; see docs/models.md).",
                        autocompletion=complete_recipe)


def config_option() -> Any:
    """``--config/-c FILE``: a YAML with ``trainer:`` and ``model:`` sections."""
    return typer.Option(None, "--config", "-c",
                        help="YAML with 'trainer:' and 'model:' sections (a run's config.yaml works).")


def set_option() -> Any:
    """``--set/-s key=value``, repeatable: dotted overrides."""
    return typer.Option([], "--set", "-s", metavar="<key=value>",
                        help="Dotted override, repeatable: trainer.epochs=3, model.dropout=0.2.")


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """``"1,2,3"`` -> [1, 2, 3]; typer.BadParameter naming ``flag`` for anything else."""
    try:
        return [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise typer.BadParameter(f"{flag} expects comma-separated integers, got {text!r}") from None


# ---- trainer shortcut flags -----------------------------------------------------------------------
def trainer_overrides(set_: list[str], **shortcuts: Any) -> list[str]:
    """``--set`` values plus the shortcut flags of `msa train` / `msa benchmark` as ``trainer.*``
    overrides: ``epochs=3`` -> ``trainer.epochs=3``; None (flag not given) and False are left out,
    True becomes ``true``."""
    out = list(set_)
    for key, value in shortcuts.items():
        if value is None or value is False:
            continue
        out.append(f"trainer.{key}={'true' if value is True else value}")
    return out


# ---- shell completion of model names, presets and recipes ---------------------------------------------------------
# (typer calls these on <TAB>; the registry is imported then, never when a command runs or `msa --help` prints)

def _matching(values: Iterable[str], incomplete: str) -> list[str]:
    return sorted(v for v in set(values) if v.startswith(incomplete))


def _chosen_models(ctx: typer.Context) -> list[str]:
    """The registered models the command line names so far (--model, `models show NAME`, --models a,b), else all."""
    from ..models import list_models

    known = list_models()
    given = ctx.params.get("model") or ctx.params.get("name") or ctx.params.get("models") or ""
    named = [m for m in str(given).split(",") if m in known]
    return named or known


def complete_model(incomplete: str) -> list[str]:
    """Registered model names starting with ``incomplete`` (--model, `msa models show NAME`)."""
    from ..models import list_models

    return _matching(list_models(), incomplete)


def complete_models(incomplete: str) -> list[str]:
    """``--models a,b,<TAB>``: the list so far followed by each registered model not in it yet."""
    from ..models import list_models

    head, _, last = incomplete.rpartition(",")
    taken = set(head.split(",")) if head else set()
    prefix = f"{head}," if head else ""
    return [prefix + name for name in _matching(list_models(), last) if name not in taken]


def complete_preset(ctx: typer.Context, incomplete: str) -> list[str]:
    """The presets of the model(s) named so far (every model's when none is)."""
    from ..models import get_entry

    return _matching((p for m in _chosen_models(ctx) for p in get_entry(m).presets), incomplete)


def complete_recipe(ctx: typer.Context, incomplete: str) -> list[str]:
    """``toolkit`` and the recipes of the model(s) named so far (every model's when none is)."""
    from ..training.recipes import RECIPES, TOOLKIT_RECIPE

    models = _chosen_models(ctx)
    return _matching([TOOLKIT_RECIPE.name, *(r for m in models for r in RECIPES.get(m, {}))], incomplete)
