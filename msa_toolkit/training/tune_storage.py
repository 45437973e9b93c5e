"""The shared study database of `msa tune`: Optuna storage with heartbeats, which process owns a running trial,
failing the trials of processes that ended, and the trial budget (what counts against ``--trials``).

Several processes (``--jobs``, or machines sharing one database URL) work on one study; a trial records its
owner (host, pid, process start time) so a process on the same machine can tell a killed trial from a running
one at once, and heartbeats decide for the other machines.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Mapping

from .tune_report import COUNTED_ATTR, OVER_ATTR, OWNER_ATTR

__all__ = ["HEARTBEAT_INTERVAL_S", "HEARTBEAT_GRACE_S", "is_sqlite", "open_storage", "start_time", "owner",
           "owner_alive", "fail_dead_trials", "counts", "claimed"]

#: a running trial records a heartbeat this often (seconds) in the storage
HEARTBEAT_INTERVAL_S = 30
#: a running trial without a heartbeat for this long (seconds) is failed by the next process that starts a trial
HEARTBEAT_GRACE_S = 120


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def open_storage(url: str):
    """An Optuna RDBStorage with heartbeats (SQLite: a long lock timeout, several processes write to one file)."""
    import warnings

    import optuna

    kwargs = {"connect_args": {"timeout": 120}} if is_sqlite(url) else {}
    with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna's words since 2.9
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_INTERVAL_S,
                                          grace_period=HEARTBEAT_GRACE_S)


def start_time(pid: int) -> str | None:
    """The start time of a process (Linux /proc, in clock ticks since boot), telling a reused pid apart; None
    where unknown. 'Z' (a zombie: finished, not yet reaped) counts as ended: returns ''."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    return "" if fields[0] == "Z" else fields[19]


def owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": start_time(os.getpid())}


def owner_alive(owner: Mapping[str, Any]) -> bool:
    """Whether the process that runs a trial still does; True where it cannot be known (another machine: the
    heartbeat decides)."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = int(owner.get("pid", -1))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = start_time(pid)
    return now is None or (now != "" and (owner.get("started") in (None, now)))


def fail_dead_trials(study) -> None:
    """Mark failed the running trials whose process on this machine has ended (killed, crashed)."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(OWNER_ATTR)
        if owner and not owner_alive(owner):
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)


def counts(t) -> bool:
    """Whether a trial counts against the study's ``trials``: finished or running, or failed as non-finite."""
    from optuna.trial import TrialState

    if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING):
        return not t.user_attrs.get(OVER_ATTR)
    return t.state == TrialState.FAIL and bool(t.user_attrs.get(COUNTED_ATTR))


def claimed(study) -> int:
    return sum(counts(t) for t in study.get_trials(deepcopy=False))
