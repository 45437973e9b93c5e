"""Exception types. Every error the toolkit raises on bad input derives from MSAError."""

from __future__ import annotations


class MSAError(Exception):
    """Base class for errors caused by inputs or configuration (shown to users without traceback)."""


class MediaError(MSAError):
    """A media file cannot be decoded: missing, empty, corrupt or unsupported.

    The message always names the file and the cause.
    """

    def __init__(self, path: object, cause: str):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class ExtractionError(MSAError):
    """An extractor failed on one file (recorded per file by the pipeline)."""

    def __init__(self, path: object, stage: str, cause: str):
        self.path = str(path)
        self.stage = stage
        self.cause = cause
        super().__init__(f"{self.path} [{stage}]: {cause}")


class ExtractConfigError(MSAError):
    """The extraction configuration is invalid (unknown extractor, bad parameter, bad shard)."""


class ModelLoadError(MSAError):
    """A pretrained model (Whisper, text encoder, ...) cannot be loaded, e.g. not available offline."""


class SpecMismatchError(MSAError):
    """Features, datasets or checkpoints were produced with incompatible FeatureSpecs."""


class DatasetError(MSAError):
    """A label file or dataset directory is malformed (missing column, unknown split, duplicate ids, ...)."""


class CheckpointError(MSAError):
    """A checkpoint file is missing, malformed or from an incompatible toolkit version."""


class OutputError(MSAError):
    """An output location (-o folder, --json/--csv file, cache folder) cannot be written."""


class NonFiniteError(MSAError):
    """Predictions, labels, losses or weights that are NaN or infinite: nothing is scored or saved."""


class OpenFaceNotFoundError(ModelLoadError):
    """OpenFace's ``FeatureExtraction`` binary is not installed (or not executable)."""


class RowsLostError(DatasetError):
    """Rows failed and the build was asked not to lose any (``allow_missing=False``): no dataset written."""


class BundleReadError(MSAError, ValueError):
    """A bundle on disk is missing, truncated, unparsable or does not match its json record (also a
    ValueError, for callers that catch bad values)."""


class RunNotice(UserWarning):
    """What a run says without progress output (a warning about the data or settings, what a resume runs): a
    Python warning for library callers; ``msa`` prints it as one plain line, also under ``-q``."""
