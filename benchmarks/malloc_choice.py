"""A benchmark's ``--malloc`` choice: run with ``msa train``'s glibc malloc settings (``tuned``) or glibc's own.

Imported by the benchmark scripts as ``benchmarks.malloc_choice`` (they put the repository root on the path).
"""

from __future__ import annotations

from msa_toolkit.allocator import TUNED, keep_freed_memory, user_choice

#: the values of a benchmark's ``--malloc`` option
CHOICES = (TUNED, "default")


def apply_choice(choice: str) -> str:
    """``choice`` applied to this process; returns what the process runs with, for the record: ``"tuned"``,
    ``"default"``, or ``"default (not applied: <why>)"``."""
    if choice != TUNED:
        return "default"
    if keep_freed_memory():
        return TUNED
    return f"default (not applied: {user_choice() or 'not glibc'})"
