"""Build a native dataset from a label file and (optionally) a folder of media.

Media layouts found automatically, with any media extension:

- MMSA-FET: ``<videos>/<video_id>/<clip_id>.<ext>`` (``<videos>`` may be the
  dataset root holding ``Raw/``, or ``Raw`` itself);
- flat: ``<videos>/<id>.<ext>`` or ``<videos>/<video_id>_<clip_id>.<ext>``.

Without media the dataset is text-only: the label file's ``text`` goes through
the text encoder (:func:`msa_toolkit.extraction.extract_texts`) and audio/vision
are absent from the FeatureSpec (masked in batches). With media, the
extraction pipeline runs on every located file, reusing its content-addressed
cache, worker processes, shards and progress display; ``transcripts="label"``
replaces Whisper with the label file's text (rows without text fall back to
the configured ASR).

With ``--align words`` a label transcript has no word times: Whisper still runs
and the label's words are mapped onto the recognised ones
(:mod:`msa_toolkit.word_timing`); the fraction of words matched is kept per row
(bundle meta ``word_match``, manifest ``provenance.word_match``, the report). A
row below ``min_word_match`` (default :data:`~msa_toolkit.word_timing.MIN_WORD_MATCH`)
is a failure of stage ``"align"``: its transcript does not fit its audio.

Rows whose media is missing, fails to extract or aligns too poorly are listed in
``errors.json`` inside the dataset directory (id, path, stage, message) and left
out; the rest is built. With ``allow_missing=False`` (the CLI's default) a lost
row fails the whole build instead: no dataset is written, ``errors.json`` alone
is left in the (new) directory, and :class:`RowsLostError` is raised. When no row can be built, nothing is left behind (no empty dataset
that would block a re-run). The dataset is built in a temporary folder and swapped in only when complete
(:func:`~.native.write_dataset`), so a failed ``overwrite`` (a full disk) keeps the existing dataset. NaN/inf feature values of every modality are
replaced by 0 and counted per modality (:mod:`.finite`; report and provenance).
``shard="i/n"`` only extracts shard ``i`` into the cache (for fanning
a large corpus out over machines); a final run without ``shard`` assembles the
dataset from the cache.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .._io import MEDIA_EXTENSIONS, atomic_write_json, progress_bar
from ..errors import DatasetError, RowsLostError
from ..features import FeatureBundle
from ..ids import NAME_SEPARATOR, sample_id
from ..word_timing import MIN_WORD_MATCH
from .finite import clean_sample
from .labels import DEFAULT_SPLIT_RATIOS, LabelRow, LabelTable, read_labels
from .native import MANIFEST, MSADataset, Sample, write_dataset

#: name of the failure report inside the dataset directory
ERRORS_FILE = "errors.json"
#: how a RowsLostError tells the caller to keep going without the lost rows (``msa dataset create`` names
#: its flag, ``--allow-missing``, instead)
ALLOW_MISSING = "allow_missing=True"
#: texts per extract_texts call (bounds memory on MOSEI-sized label files)
TEXT_BATCH = 2048


def media_extensions() -> frozenset[str]:
    """Lower-case media extensions with dots: the toolkit's one list, :data:`msa_toolkit._io.MEDIA_EXTENSIONS`."""
    return MEDIA_EXTENSIONS


@dataclass(frozen=True)
class RowFailure:
    """A label-file row left out of the dataset (one entry of ``errors.json``).

    A different record from the extraction ``Failure`` (a media *file* that could not be
    processed: path, stage, message): a row can fail without any file (no media found, empty
    text), and one failed file fails every row that points at it. Defects found later in a
    written dataset are :class:`~msa_toolkit.data.inspect.DatasetIssue`.
    """

    # sample id
    id: str
    # media path involved ("" when none was found)
    path: str
    # pipeline stage that failed ("input" = media not found; else a pipeline stage)
    stage: str
    # readable cause
    message: str


@dataclass
class BuildReport:
    """What :func:`build_dataset` did."""

    # the dataset directory
    out_dir: Path
    # the built dataset (None when only a shard was extracted)
    dataset: MSADataset | None
    # samples written per split
    sizes: dict[str, int] = field(default_factory=dict)
    # rows left out and why
    failures: list[RowFailure] = field(default_factory=list)
    # rows in the label file
    n_rows: int = 0
    # True when the label file had no splits and they were created
    splits_created: bool = False
    # "text" (label text only) or "media"
    kind: str = "text"
    # the shard extracted, as (i, n), when only a shard was processed
    shard: tuple[int, int] | None = None
    # files served from the extraction cache
    n_cached: int = 0
    # wall time in seconds
    seconds: float = 0.0
    # NaN/inf feature values replaced by 0, per modality
    nonfinite: dict[str, int] = field(default_factory=dict)
    # created splits: what they keep together ("video", or "clip" with too few videos); None when given
    split_grouping: str | None = None
    # created splits: the train/valid/test fractions asked for
    split_ratios: tuple[float, ...] | None = None
    # fraction of the label transcript's words matched to Whisper's, per row id (rows whose words were timed)
    word_match: dict[str, float] = field(default_factory=dict)

    def split_fractions(self) -> dict[str, float]:
        """Fraction of the written samples in each split."""
        total = sum(self.sizes.values())
        return {k: v / total for k, v in self.sizes.items()} if total else {}

    @property
    def errors_path(self) -> Path | None:
        p = self.out_dir / ERRORS_FILE
        return p if p.is_file() else None


# ---------------------------------------------------------------------------------------
# media lookup
# ---------------------------------------------------------------------------------------
class MediaIndex:
    """Media files under a folder, found by relative stem (``vid/clip``) or file stem."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: videos folder not found")
        exts = media_extensions()
        self.by_rel: dict[str, Path] = {}
        for f in sorted(self.root.rglob("*")):
            if f.is_file() and f.suffix.lower() in exts and not f.name.startswith("."):
                rel = f.relative_to(self.root).with_suffix("").as_posix()
                self.by_rel.setdefault(rel, f)
                # MMSA-FET: the dataset root holds Raw/<video>/<clip>
                if rel.lower().startswith("raw/"):
                    self.by_rel.setdefault(rel[4:], f)

    def candidates(self, row: LabelRow) -> list[str]:
        c = []
        if row.clip_id:
            c.append(f"{row.video_id}/{row.clip_id}")
        c.append(row.id)
        if row.clip_id:
            c.append(sample_id(row.video_id, row.clip_id))
            # a flat folder of `msa extract`-style names (msa_toolkit/ids.py)
            c.append(f"{row.video_id}{NAME_SEPARATOR}{row.clip_id}")
        return list(dict.fromkeys(c))

    def find(self, row: LabelRow) -> Path | None:
        for key in self.candidates(row):
            if key in self.by_rel:
                return self.by_rel[key]
        return None

    def __len__(self) -> int:
        return len(set(self.by_rel.values()))


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _row_fields(r: LabelRow) -> dict[str, Any]:
    return {"label_T": r.label_T, "label_A": r.label_A, "label_V": r.label_V, "annotation": r.annotation,
            "text": r.text, "video_id": r.video_id, "clip_id": r.clip_id or None}


def _write_errors(out: Path, failures: Sequence[RowFailure]) -> None:
    p = out / ERRORS_FILE
    if failures:
        atomic_write_json(p, [asdict(f) for f in failures])
    else:
        p.unlink(missing_ok=True)


def _config_default():
    from ..extraction import ExtractConfig

    return ExtractConfig()


# ---------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------
def build_dataset(labels: str | os.PathLike, videos: str | os.PathLike | None = None,
                  out_dir: str | os.PathLike | None = None, transcripts: str = "whisper", config: Any = None,
                  cache_dir: str | os.PathLike | None = None, workers: int = 1, shard: str | None = None,
                  progress: bool = True, seed: int = 0, split_ratios: Sequence[float] = DEFAULT_SPLIT_RATIOS,
                  overwrite: bool = False, min_word_match: float = MIN_WORD_MATCH,
                  allow_missing: bool = False) -> BuildReport:
    """Build a native dataset in ``out_dir`` from ``labels`` (+ ``videos``); see the module docstring.

    Args:
        labels: label file (CSV/TSV) in any of the layouts :mod:`msa_toolkit.data.labels` accepts.
        videos: folder of media (MMSA-FET ``Raw/<video>/<clip>.*`` or flat); None builds a text-only set.
        out_dir: the dataset directory to create (required).
        transcripts: ``"whisper"`` (ASR) or ``"label"`` (the label file's text replaces ASR).
        config: :class:`msa_toolkit.extraction.ExtractConfig`; default the toolkit's defaults.
        cache_dir: extraction cache (default ``$MSA_CACHE_DIR`` or ``~/.cache/msa_toolkit``).
        workers: extraction processes.
        shard: ``"i/n"``: extract only shard i of the media into the cache, write no dataset.
        progress: show rich progress bars.
        seed: seed of split creation when the label file has no split column.
        split_ratios: train/valid/test fractions for created splits.
        overwrite: replace an existing dataset in ``out_dir``.
        min_word_match: lowest fraction of a label transcript's words matched to the speech
            (``--align words`` with label transcripts); rows below it fail (stage ``"align"``).
        allow_missing: build the dataset without the rows that failed (listed in the report and in
            ``errors.json``); False (the default, as ``msa dataset create``) raises :class:`RowsLostError`
            when any row is lost, writing no dataset.
    """
    t0 = time.perf_counter()
    if out_dir is None:
        raise DatasetError("build_dataset needs out_dir (the dataset directory to create)")
    if transcripts not in ("whisper", "label"):
        raise DatasetError(f"transcripts must be 'whisper' or 'label', got {transcripts!r}")
    cfg = config if config is not None else _config_default()
    table = read_labels(labels, seed=seed, split_ratios=split_ratios)
    out = Path(out_dir)
    if (out / "manifest.json").exists() and not overwrite and shard is None:
        raise DatasetError(f"{out} already holds a dataset (manifest.json); "
                           "choose another directory or pass --overwrite")
    prov = {"source": "label_file", "labels": str(Path(labels).resolve()),
            "videos": str(Path(videos).resolve()) if videos is not None else None,
            "transcripts": "label" if videos is None else transcripts, "config": cfg.to_dict(),
            "splits_created": table.splits_created, "split_seed": table.split_seed,
            "split_ratios": list(split_ratios) if table.splits_created else None,
            "split_grouping": table.split_grouping}
    if videos is None:
        report = _build_text_only(table, out, cfg, cache_dir, progress, prov, overwrite, allow_missing)
    else:
        report = _build_from_media(table, Path(videos), out, cfg, transcripts, cache_dir, workers, shard,
                                   progress, {**prov, "min_word_match": min_word_match}, overwrite,
                                   allow_missing)
    report.seconds = time.perf_counter() - t0
    if table.splits_created:
        report.split_grouping, report.split_ratios = table.split_grouping, tuple(split_ratios)
    return report


def _nothing_built(table: LabelTable, failures: Sequence[RowFailure]) -> DatasetError:
    reasons = "; ".join(f"{f.id} [{f.stage}] {f.message}" for f in failures[:3])
    more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
    return DatasetError(f"{table.path}: no row could be built, so no dataset was written: {reasons}{more}")


def _finish(table: LabelTable, out: Path, spec: Any, gens: Mapping[str, Any], failures: list[RowFailure],
            prov: dict[str, Any], overwrite: bool, kind: str, nonfinite: Mapping[str, int],
            allow_missing: bool = True) -> BuildReport:
    """Write the dataset (and errors.json); on any failure, or when no row was built, nothing is put in
    ``out`` (write_dataset builds it aside and swaps it in only when complete)."""
    if not gens:
        raise _nothing_built(table, failures)
    if (out / MANIFEST).exists() and not overwrite:
        raise DatasetError(f"{out} already holds a dataset (manifest.json); "
                           "choose another directory or pass --overwrite")
    if failures and not allow_missing:
        raise _rows_lost(table, out, failures)
    prov = {**prov, "n_rows": len(table), "n_failed": len(failures)}

    def complete(ds: Any) -> None:  # in write_dataset's temporary folder, before the swap
        if sum(ds.num_samples().values()) == 0:
            raise _nothing_built(table, failures)
        if failures and not allow_missing:  # a row failed while its features were read
            raise _rows_lost(table, out, failures)
        ds.manifest["provenance"]["nonfinite_replaced"] = dict(nonfinite)
        atomic_write_json(ds.path / MANIFEST, ds.manifest)
        _write_errors(ds.path, failures)

    ds = write_dataset(out, spec, gens, provenance=prov, overwrite=overwrite, finish=complete)
    return BuildReport(out, ds, ds.num_samples(), failures, len(table), table.splits_created, kind,
                       nonfinite=dict(nonfinite))


def _build_text_only(table: LabelTable, out: Path, cfg: Any, cache_dir: Any, progress: bool,
                     prov: dict[str, Any], overwrite: bool, allow_missing: bool = True) -> BuildReport:
    from ..extraction import extract_texts

    if not table.has_text:
        raise DatasetError(f"{table.path}: no text column, so a text-only dataset cannot be built; "
                           "add a 'text' column or give the videos folder")
    if not cfg.text:
        raise DatasetError("a text-only dataset needs a text encoder (the extraction config has text=None)")
    tcfg = replace(cfg, asr=None, audio=None, vision=None)
    spec = tcfg.build_spec(["text"])
    failures = [RowFailure(r.id, "", "text", f"empty text in the label file (line {r.line})")
                for r in table.rows if not r.text]
    by_split = {s: [r for r in rows if r.text] for s, rows in table.by_split().items()}
    by_split = {s: rows for s, rows in by_split.items() if rows}  # a split whose rows all failed is left out
    total = sum(len(v) for v in by_split.values())

    nonfinite: dict[str, int] = {m: 0 for m in spec.modalities}
    with progress_bar(progress, eta=False) as bar:
        task = bar.add_task("encode texts", total=total)

        def gen(rows: list[LabelRow]) -> Iterator[Sample]:
            for c in range(0, len(rows), TEXT_BATCH):
                chunk = rows[c:c + TEXT_BATCH]
                bundles = extract_texts({r.id: r.text for r in chunk}, tcfg, cache_dir=cache_dir, progress=False)
                for r in chunk:
                    b = bundles[r.id]
                    if b.spec.fingerprint() != spec.fingerprint():
                        b.spec.require_compatible(spec, what=f"text features of {r.id!r}",
                                                  sides=("cached", "dataset"))
                    yield clean_sample(Sample.from_bundle(r.id, b, r.label, **_row_fields(r)), nonfinite)
                bar.advance(task, len(chunk))

        gens = {s: gen(rows) for s, rows in by_split.items()}
        return _finish(table, out, spec, gens, failures, prov, overwrite, "text", nonfinite, allow_missing)


def _build_from_media(table: LabelTable, videos: Path, out: Path, cfg: Any, transcripts: str, cache_dir: Any,
                      workers: int, shard: str | None, progress: bool, prov: dict[str, Any],
                      overwrite: bool, allow_missing: bool = True) -> BuildReport:
    from ..extraction import extract, parse_shard

    index = MediaIndex(videos)
    failures: list[RowFailure] = []
    path_of: dict[str, Path] = {}
    for r in table.rows:
        f = index.find(r)
        if f is None:
            looked = ", ".join(f"{c}.*" for c in index.candidates(r))
            failures.append(RowFailure(r.id, "", "input", f"no media file found under {videos} (looked for {looked})"))
        else:
            path_of[r.id] = f.resolve()
    user_tr: dict[str, str] | None = None
    if transcripts == "label":
        if not table.has_text:
            raise DatasetError(f"{table.path}: --transcripts label needs a text column")
        user_tr = {str(path_of[r.id]): r.text for r in table.rows if r.id in path_of and r.text}
    files = sorted(set(path_of.values()), key=str)
    res = extract(files, out_dir=None, config=cfg, cache_dir=cache_dir, workers=workers, shard=shard,
                  transcripts=user_tr, progress=progress)
    shard_t = parse_shard(shard)
    if shard_t is not None:
        return BuildReport(out, None, {}, [RowFailure("", f.path, f.stage, f.message) for f in res.failures],
                           len(table), table.splits_created, "media", shard_t, res.n_cached)
    item_of = {str(Path(i.path).resolve()): i for i in res.items}
    fail_of = {str(Path(f.path).resolve()): f for f in res.failures}
    spec = res.spec
    ok_rows: dict[str, list[LabelRow]] = {}
    word_match: dict[str, float] = {}
    for split, rows in table.by_split().items():
        keep = []
        for r in rows:
            if r.id not in path_of:
                continue
            key = str(path_of[r.id])
            if key in item_of:
                bad = _poor_word_match(r, item_of[key], prov["min_word_match"], word_match)
                if bad is None:
                    keep.append(r)
                else:
                    failures.append(bad)
            else:
                f = fail_of.get(key)
                failures.append(RowFailure(r.id, key, f.stage if f else "extract",
                                           f.message if f else "not extracted (no result from the pipeline)"))
        if keep:  # a split whose rows all failed is left out
            ok_rows[split] = keep
    nonfinite: dict[str, int] = {m: 0 for m in spec.modalities} if spec is not None else {}

    def gen(rows: list[LabelRow]) -> Iterator[Sample]:
        for r in rows:
            item = item_of[str(path_of[r.id])]
            try:
                b = FeatureBundle.load(item.bundle_path)
            except (OSError, ValueError, KeyError) as e:
                failures.append(RowFailure(r.id, item.path, "save", f"cannot read extracted features: {e}"))
                continue
            text = r.text if transcripts == "label" else None
            fields = {**_row_fields(r), "text": text}
            yield clean_sample(Sample.from_bundle(r.id, b, r.label, **fields), nonfinite)

    gens = {s: gen(rows) for s, rows in ok_rows.items()}
    failures.sort(key=lambda f: f.id)
    prov = {**prov, "n_media_found": len(index), "word_match": _word_match_summary(word_match)}
    rep = _finish(table, out, spec, gens, failures, prov, overwrite, "media", nonfinite, allow_missing)
    rep.n_cached, rep.word_match = res.n_cached, word_match
    return rep


def _poor_word_match(row: LabelRow, item: Any, threshold: float, word_match: dict[str, float]) -> RowFailure | None:
    """Record the row's word match (bundle meta, when its words were timed from Whisper's) in
    ``word_match``; a failure when it is below ``threshold``."""
    try:
        meta = json.loads(Path(item.bundle_path).with_suffix(".json").read_text()).get("meta", {})
    except (OSError, ValueError):
        return None  # unreadable bundle: reported when its features are read
    frac = meta.get("word_match")
    if frac is None:
        return None
    word_match[row.id] = float(frac)
    if frac >= threshold:
        return None
    return RowFailure(row.id, item.path, "align",
                      f"only {100 * frac:.0f}% of the label transcript's words match the speech Whisper "
                      f"recognised (below --min-word-match {threshold:g}): the text does not fit this clip")


def _word_match_summary(word_match: Mapping[str, float]) -> dict[str, Any] | None:
    """Manifest record of the word matches: mean, min and every row's fraction (None when no row was timed)."""
    if not word_match:
        return None
    vals = list(word_match.values())
    return {"mean": round(sum(vals) / len(vals), 4), "min": round(min(vals), 4), "rows": dict(word_match)}


def _rows_lost(table: LabelTable, out: Path, failures: Sequence[RowFailure]) -> RowsLostError:
    """The error for lost rows; writes ``errors.json`` into ``out`` unless it holds a dataset (left unchanged)."""
    if (out / MANIFEST).exists():
        details = f"{out} keeps its dataset, so no {ERRORS_FILE} was written"
    else:
        _write_errors(out, failures)
        details = f"details in {out / ERRORS_FILE}"
    reasons = "; ".join(f"{f.id} [{f.stage}] {f.message}" for f in failures[:3])
    more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
    return RowsLostError(f"{len(failures)} of {len(table)} rows of {table.path} could not be built, so no dataset "
                         f"was written ({details}): {reasons}{more}; pass {ALLOW_MISSING} to build the dataset "
                         "without them")


__all__ = ["build_dataset", "BuildReport", "RowFailure", "RowsLostError", "MediaIndex", "media_extensions", "ERRORS_FILE"]
