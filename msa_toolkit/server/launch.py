"""serve(): run the app with uvicorn until Ctrl-C / SIGTERM."""

from __future__ import annotations

import logging
import re
import warnings

from ..errors import MSAError, RunNotice
from .config import ServeConfig, is_loopback

#: uvicorn's log level (its access log names every request)
LOG_LEVEL = "info"
#: a token in a logged URL (the page's /?token=...), replaced by TOKEN_MASK in the access log
TOKEN_IN_URL = re.compile(r"(token=)[^&\s]*")
TOKEN_MASK = r"\1***"


class RedactToken(logging.Filter):
    """Keeps the token of ``/?token=...`` out of uvicorn's access log (its arguments hold the full path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(TOKEN_IN_URL.sub(TOKEN_MASK, a) if isinstance(a, str) else a for a in record.args)
        return True


def exposure_notice(config: ServeConfig) -> str | None:
    """The warning for a bind address other than loopback without a token (anyone who reaches it may use it)."""
    if config.token is None and not is_loopback(config.host):
        return (f"warning: listening on {config.host} without --token: anyone who can reach this machine can "
                "upload clips and use the model; pass --token (or bind 127.0.0.1)")
    return None


def serve(config: ServeConfig = ServeConfig(), log_level: str = LOG_LEVEL) -> None:
    """Load the checkpoint, start the workers and serve HTTP on ``config.host:config.port`` until stopped.

    A bind address other than loopback without ``config.token`` raises a :class:`RunNotice` warning
    (printed by `msa serve`). Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart).
    """
    try:
        import uvicorn

        from .app import create_app
    except ImportError as e:  # the optional extra is missing
        raise MSAError(f"msa serve needs the 'serve' extra: pip install 'msa_toolkit[serve]' ({e})") from None
    notice = exposure_notice(config)
    if notice:
        warnings.warn(notice, RunNotice, stacklevel=2)
    app = create_app(config)
    server_config = uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                                   timeout_graceful_shutdown=10)  # configures uvicorn's loggers
    logging.getLogger("uvicorn.access").addFilter(RedactToken())
    uvicorn.Server(server_config).run()
