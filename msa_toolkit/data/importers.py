"""``msa dataset import``: which pickle format a path holds, and the import of either.

=========  ==================================================  ========================
format     what it is                                          module
=========  ==================================================  ========================
mmsa       MMSA's dict of split dicts of arrays                :mod:`.mmsa`
           (``aligned_50.pkl``, ``unaligned_50.pkl``, ...)
magbert    MAG-BERT / MInD's lists of word-aligned items       :mod:`.magbert`
           (``mosi.pkl``; ``train.pkl`` + ``dev.pkl`` +
           ``test.pkl``)
=========  ==================================================  ========================

Detection (``fmt="auto"``) looks at the content, not the name: a folder or a ``train.pkl`` with
``dev.pkl`` and ``test.pkl`` beside it is magbert; otherwise the file is unpickled once and a
dict whose splits are dicts is mmsa, one whose splits are lists is magbert.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from ..errors import DatasetError

#: the accepted values of ``fmt`` / ``--format``
FORMATS = ("auto", "mmsa", "magbert")


def detect_format(path: str | os.PathLike) -> tuple[str, Any]:
    """``(format, content)``: "mmsa" or "magbert", and the unpickled file (None when not read)."""
    from .magbert import is_magbert_data, split_files
    from .safe_pickle import load_pickle

    p = Path(path)
    if p.is_dir() or split_files(p) is not None:
        return "magbert", None
    data = load_pickle(p)
    if isinstance(data, Mapping) and any(isinstance(v, Mapping) for v in data.values()):
        return "mmsa", data
    if is_magbert_data(data):
        return "magbert", data
    raise DatasetError(f"{p}: neither an MMSA pickle (a dict of train/valid/test dicts of arrays) nor a MAG-BERT "
                       f"pickle (train/dev/test lists of ((words, visual, acoustic), label, segment)); "
                       f"top level is {type(data).__name__}")


def import_pickle(path: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "auto", overwrite: bool = False,
                  **magbert: Any) -> tuple[Any, Any, str]:
    """Import an MMSA or MAG-BERT pickle as a native dataset; returns (dataset, report, format).

    ``magbert`` holds :func:`~.magbert.import_magbert`'s options (``text_model``, ``align``,
    ``device``), ignored for MMSA pickles."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    data = None
    if fmt == "auto":
        fmt, data = detect_format(path)
    if fmt == "mmsa":
        if Path(path).is_dir():
            raise DatasetError(f"{path}: an MMSA pickle is one file (aligned_50.pkl, ...), not a folder")
        from .mmsa import import_mmsa

        ds, rep = import_mmsa(path, out_dir, overwrite=overwrite, data=data)
        return ds, rep, fmt
    from .magbert import import_magbert

    ds, rep = import_magbert(path, out_dir, overwrite=overwrite, data=data, **magbert)
    return ds, rep, fmt


def import_dataset(path: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "auto", overwrite: bool = False,
                   text_model: str | None = "minilm", align: str = "auto", device: str = "cpu") -> tuple[Any, Any, str]:
    """``msa dataset import`` with its defaults: an MMSA or MAG-BERT / MInD pickle (or their folder) as a native
    dataset in ``out_dir``; returns (dataset, report, format used).

    ``fmt``: auto (from the content) | mmsa | magbert. For magbert pickles only: ``text_model`` (minilm, a
    transformers folder / cached id, or None for transcripts only), ``align`` (tokens | words | auto) and
    ``device`` (where the text model runs). An existing dataset is replaced only with ``overwrite``."""
    return import_pickle(path, out_dir, fmt=fmt, overwrite=overwrite, text_model=text_model, align=align,
                         device=device)


#: the accepted values of ``fmt`` / ``msa dataset export --format``
EXPORT_FORMATS = ("mmsa",)


def export_dataset(dataset: Any, out_file: str | os.PathLike, fmt: str = "mmsa",
                   lengths: Mapping[str, int] | None = None) -> Any:
    """``msa dataset export`` with its defaults: a native dataset (directory or opened) as an MMSA pickle, usable
    by MMSA, ALMT and DLF reference code; returns the export report. ``lengths``: padded length per modality
    (default: MMSA-FET's mean + 3 std of the lengths, rounded; an imported pickle keeps its own)."""
    if fmt not in EXPORT_FORMATS:
        raise DatasetError(f"unknown export format {fmt!r}; supported: {', '.join(EXPORT_FORMATS)}")
    from .mmsa import export_mmsa

    return export_mmsa(dataset, out_file, lengths=lengths)


__all__ = ["detect_format", "export_dataset", "import_dataset", "import_pickle", "EXPORT_FORMATS", "FORMATS"]
