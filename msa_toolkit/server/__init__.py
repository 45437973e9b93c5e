"""`msa serve`: an offline HTTP API and a web page for the sentiment of uploaded clips.

The model and its extractors are loaded once, when the server starts; requests wait in a
bounded queue in front of them (``503`` with ``Retry-After`` when it is full). An upload is
streamed into a private temporary folder, its size checked while it arrives, decoded from there
and removed once the answer is made; the client's file name is only echoed back, never used as
a path. The answer is the document of ``msa predict --json`` for that one clip.

Modules: ``config`` (ServeConfig, limits), ``errors`` (ApiError: the JSON error of every 4xx/5xx),
``uploads`` (the streamed multipart upload), ``engine`` (ModelPool: worker threads behind the
queue), ``metrics`` (Prometheus text), ``app`` (the FastAPI routes and the page), ``launch``
(serve(): uvicorn, the loopback warning). FastAPI and uvicorn are the optional extra ``serve``
(``pip install msa_toolkit[serve]``) and are imported only when a server is made.
"""

from __future__ import annotations

from typing import Any

from .config import ServeConfig
from .engine import ModelPool
from .errors import ApiError
from .launch import serve

__all__ = ["ApiError", "ModelPool", "ServeConfig", "create_app", "serve"]


def create_app(*args: Any, **kwargs: Any) -> Any:
    """:func:`msa_toolkit.server.app.create_app` (imported on call: FastAPI loads only when an app is made)."""
    from .app import create_app as make

    return make(*args, **kwargs)
