"""`msa serve`: an offline HTTP API and web page for the sentiment of uploaded clips (thin wrapper over
msa_toolkit.server.serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..server.config import DEFAULT_HOST, DEFAULT_MAX_UPLOAD_MB, DEFAULT_PORT, DEFAULT_QUEUE

#: shown in --help: what is served
ROUTES_NOTE = (
    "Routes: POST /v1/predict (a clip as multipart field 'file', or JSON {\"text\": ...}; ?segments=true adds "
    "the timeline) answers what `msa predict --json` writes for that clip; GET /v1/model, /healthz, /metrics "
    "(Prometheus), /docs (OpenAPI); the page at / (pick, drop or record a clip). Everything runs offline."
)
#: shown in --help: the safety rules
SAFETY_NOTE = (
    "Uploads are streamed to a private temporary folder, refused once over --max-upload-mb, and removed after "
    "the answer. With --token every route but /healthz needs 'Authorization: Bearer TOKEN' (open the page as "
    "/?token=TOKEN). Binding an address other than 127.0.0.1 without --token prints a warning."
)


def serve_command(
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", exists=True, dir_okay=False,
                                              help="A checkpoint written by `msa train` (default: bundled model)."),
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Bind address (0.0.0.0: every interface)."),
    port: int = typer.Option(DEFAULT_PORT, "--port", min=0, max=65535, help="TCP port."),
    max_upload_mb: float = typer.Option(DEFAULT_MAX_UPLOAD_MB, "--max-upload-mb", min=0.001,
                                        help="Largest accepted upload (MiB), enforced while it streams."),
    token: Optional[str] = typer.Option(None, "--token", envvar="MSA_SERVE_TOKEN",
                                        help="Require 'Authorization: Bearer TOKEN' on every route but /healthz "
                                             "(or set $MSA_SERVE_TOKEN)."),
    workers: int = typer.Option(1, "--workers", "-w", min=1,
                                help="Model worker threads, each with its own Whisper and text encoder."),
    queue: int = typer.Option(DEFAULT_QUEUE, "--queue", min=0,
                              help="Requests that may wait beyond those being served; more get 503 + Retry-After."),
    threads: Optional[int] = typer.Option(None, "--threads", min=0,
                                          help="torch CPU threads, set once at start-up (0: torch's default)."),
) -> None:
    """Serve sentiment predictions over HTTP, with a web page: the model loads once, at start-up."""
    from ..allocator import keep_freed_memory
    from ..server import ServeConfig, serve

    keep_freed_memory()
    config = ServeConfig(checkpoint=str(checkpoint) if checkpoint else None, host=host, port=port,
                         max_upload_mb=max_upload_mb, token=token, workers=workers, queue=queue, threads=threads)
    serve(config)


serve_command.__doc__ = "\n\n".join((serve_command.__doc__ or "", ROUTES_NOTE, SAFETY_NOTE))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
