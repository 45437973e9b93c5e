"""The settings of one `msa serve` process (:class:`ServeConfig`) and the limits it enforces."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Optional

from .._fields import doc
from ..errors import MSAError

#: default bind address: this machine only
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: default upload limit (MiB): a few minutes of phone video
DEFAULT_MAX_UPLOAD_MB = 200.0
#: requests that may wait for the model beyond those being served (then 503 + Retry-After)
DEFAULT_QUEUE = 16
#: the most bytes of a JSON body (text-only requests)
MAX_JSON_BYTES = 1 << 20
#: the most characters of a text-only request
MAX_TEXT_CHARS = 20_000
#: host names taken as loopback without resolving them
LOOPBACK_NAMES = ("localhost",)


@dataclass(frozen=True)
class ServeConfig:
    """How `msa serve` runs: what it loads, where it listens, what it accepts."""

    checkpoint: Optional[str] = doc(None, "checkpoint written by `msa train` (None: the bundled default model)")
    host: str = doc(DEFAULT_HOST, "bind address; anything but loopback without a token prints a warning")
    port: int = doc(DEFAULT_PORT, "TCP port (0: any free port)")
    max_upload_mb: float = doc(DEFAULT_MAX_UPLOAD_MB, "largest accepted upload in MiB, enforced while it streams")
    token: Optional[str] = doc(None, "bearer token required on every route but /healthz (None: no auth)")
    workers: int = doc(1, "model worker threads, each with its own extractors (1 suits a 2-core CPU)")
    queue: int = doc(DEFAULT_QUEUE, "requests that may wait beyond those being served; more get 503")
    threads: Optional[int] = doc(None, "torch CPU threads, set once at start-up (None/0: torch's default)")

    def __post_init__(self) -> None:
        if self.max_upload_mb <= 0:
            raise MSAError(f"max_upload_mb must be positive, got {self.max_upload_mb}")
        if self.workers < 1:
            raise MSAError(f"workers must be >= 1, got {self.workers}")
        if self.queue < 0:
            raise MSAError(f"queue must be >= 0, got {self.queue}")
        if not 0 <= self.port <= 65535:
            raise MSAError(f"port must be in 0..65535, got {self.port}")
        if self.token is not None and not self.token.strip():
            raise MSAError("an empty --token would accept anyone: give a real token or none")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def is_loopback(host: str) -> bool:
    """True when ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any interface
        return False
