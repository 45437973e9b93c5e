"""A dataset with a split withheld: what a hyper-parameter study sees (``msa tune``).

:func:`without_test` opens the same dataset directory with the test split's entry removed from its manifest: the
split is not listed, its ids and labels are not in memory, its file is never opened, and asking for it raises
:class:`WithheldSplitError` (not a silent empty split). Everything else (train and valid splits, the train
normalisation statistics, the FeatureSpec) is the dataset's own. The view's :attr:`content_id` covers the splits
it keeps and names the withheld ones, so a study's run fingerprints differ from those of a full training run.
"""

from __future__ import annotations

from typing import Iterable

from ..errors import MSAError
from .native import MSADataset, as_dataset
from .splits import canonical_split

__all__ = ["WithheldSplitError", "WithheldDataset", "without_test", "WITHHELD_KEY"]

#: the manifest key of the view listing the splits it withholds (part of its content id)
WITHHELD_KEY = "withheld_splits"


class WithheldSplitError(MSAError):
    """Code asked for a split that is withheld (the test split during a study): a bug, never silently skipped."""


class WithheldDataset(MSADataset):
    """``dataset`` without the splits named in ``withheld`` (see the module docstring)."""

    def __init__(self, dataset: MSADataset, withheld: Iterable[str]):
        names = tuple(sorted({canonical_split(s) for s in withheld}))
        manifest = dict(dataset.manifest)
        manifest["splits"] = {k: v for k, v in manifest["splits"].items() if k not in names}
        if manifest.get("split_order"):
            manifest["split_order"] = [s for s in manifest["split_order"] if s not in names]
        manifest[WITHHELD_KEY] = list(names)
        super().__init__(dataset.path, manifest)
        # the canonical names of the splits this view refuses to open
        self.withheld: tuple[str, ...] = names

    def split(self, name: str):
        if canonical_split(name) in self.withheld:
            raise WithheldSplitError(f"{self.path}: the {canonical_split(name)} split is withheld here (a "
                                     "hyper-parameter study never reads it); score it after the study, with "
                                     "--final-seeds or `msa train -c best_config.yaml`")
        return super().split(name)

    def __contains__(self, name: str) -> bool:
        return canonical_split(name) not in self.withheld and super().__contains__(name)


def without_test(dataset) -> WithheldDataset:
    """The dataset (an opened one or a directory) with its test split withheld."""
    return WithheldDataset(as_dataset(dataset), ("test",))
