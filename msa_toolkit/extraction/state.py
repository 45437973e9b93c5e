"""Where one extraction run's finished files go: the cache, ``out_dir`` copies, results, failures, the bar."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache import FeatureCache
from ..features import BundleReadError, check_bundle
from .jobs import FOUND, Job
from .outputs import export_bundle, out_is_current, write_srt
from .results import Failure, FileResult, unmet_requirement
from .safety import interrupts_deferred

@dataclass
class RunState:
    """Where one run's finished files go: cache, out_dir copies, results, failures and the progress bar."""

    # the content-addressed cache
    cache: FeatureCache
    # the output folder, or None (bundles stay in the cache)
    out: Path | None
    # also write <name>.srt subtitles to out
    save_srt: bool
    # the rich progress bar and its task id
    bar: Any
    task: Any
    # files that failed (the input failures of collect_files first)
    failures: list[Failure]
    # processed files
    items: list[FileResult] = field(default_factory=list)
    # stages a file must have (ExtractConfig.require): a cached bundle lacking one is a failure
    require: tuple[str, ...] = ()

    def show(self, current: str) -> None:
        """Name the file (or file: stage) being worked on in the progress bar."""
        self.bar.update(self.task, current=current)

    def show_stage(self, name: str, stage: str) -> None:
        self.show(f"{name}: {stage}")

    def fail(self, failure: Failure) -> None:
        """Record a failed file and move the progress bar on."""
        self.failures.append(failure)
        self.bar.advance(self.task)

    def finish(self, job: Job, cached: bool, header: dict | None = None) -> None:
        """Record a file whose bundle is in the cache; copy it to out_dir (unless already there).

        ``header`` is the entry's checked json when the caller has it. A copy (or, without out_dir,
        the cached entry) whose bytes differ from the entry's record raises BundleReadError (the
        entry is damaged).
        """
        with interrupts_deferred():  # copied to out_dir and recorded, or neither
            stem = self.cache.stem(job.key)
            if self.require and self.fail_required(job, stem):
                return
            if self.out is not None:
                if cached and out_is_current(self.out, job.name, job.key):
                    stem = self.out / job.name
                else:
                    stem = export_bundle(self.cache, job.key, self.out, job.name, job.path, header)
                if self.save_srt:
                    write_srt(stem)
            elif cached:  # no copy whose bytes are checked: the caller reads the entry, so check it here
                check_bundle(stem, full=True, sealed=True)
            meta = json.loads(stem.with_suffix(".json").read_text()).get("meta", {})
            # computed files report their extraction time; cache hits the time to find and copy them
            seconds = (time.perf_counter() - job.started if cached
                       else float(meta.get("timings", {}).get("total", 0.0)))
            self.items.append(FileResult.from_meta(str(job.path), job.name, str(stem), job.key, cached, seconds,
                                                   meta))

    def fail_required(self, job: Job, stem: Path) -> bool:
        """Record a failure when the bundle at ``stem`` lacks what ``require`` asks for (a cached bundle
        made without ``require``: absence and completeness are recorded in its meta); True when it did."""
        meta = json.loads(stem.with_suffix(".json").read_text()).get("meta", {})
        failure = unmet_requirement(str(job.path), meta, self.require)
        if failure is not None:
            self.failures.append(failure)
        return failure is not None

    def record(self, job: Job, failure: Failure | str | None) -> None:
        """Record the outcome of extracting ``job`` (None = stored in the cache, FOUND = stored by
        another process meanwhile) and move the bar on."""
        if failure is None or failure == FOUND:
            try:
                self.finish(job, cached=failure == FOUND)
            except (OSError, BundleReadError) as e:
                self.failures.append(Failure(str(job.path), "save", str(e)))
        else:
            self.failures.append(failure)
        self.bar.advance(self.task)
