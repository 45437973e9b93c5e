"""The FastAPI application of `msa serve`: routes, the token gate, errors as JSON, the page.

Routes: ``POST /v1/predict`` (multipart ``file`` or JSON ``{"text": ...}``; ``?segments=true``),
``GET /v1/model``, ``GET /healthz``, ``GET /metrics``, ``GET /docs`` (Swagger UI served from the
installed ``fastapi-offline`` assets, no CDN) and ``/openapi.json``, and the page: ``GET /`` and
``/static/...``. With a token every route but ``/healthz`` needs ``Authorization: Bearer TOKEN``;
the page gets it once as ``/?token=TOKEN``, which sets an HttpOnly, SameSite=Strict cookie and
redirects to ``/`` (a browser cannot send a header when it opens a page).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import time
import urllib.parse
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .config import MAX_JSON_BYTES, MAX_TEXT_CHARS, ServeConfig
from .engine import Busy, ModelPool, predict_media, predict_text
from .errors import (BAD_REQUEST, BUSY, EMPTY, INTERNAL, INVALID, NOT_MEDIA, STATUS_CODES, TOO_LARGE, UNAUTHORIZED,
                     UNDECODABLE, UNSUPPORTED_TYPE, UNUSABLE, ApiError)
from .metrics import Metrics
from .uploads import MULTIPART_OVERHEAD, accepted_types, check_length, receive_upload

#: the page's files (no build step)
STATIC_DIR = Path(__file__).resolve().parent / "static"
#: routes that answer without a token
OPEN_PATHS = ("/healthz",)
#: the cookie the page authenticates with after /?token=
TOKEN_COOKIE = "msa_token"
#: where the offline Swagger UI assets are mounted
DOCS_ASSETS = "/docs-assets"
#: routes reported by name in /metrics (others as "other", the page's files as "/static")
METRIC_ROUTES = ("/", "/v1/predict", "/v1/model", "/healthz", "/metrics", "/docs", "/openapi.json")
#: media decoding failures that mean "these bytes are not video or audio" (msa_toolkit.media's messages)
NOT_MEDIA_CAUSES = ("cannot open as media", "no audio or video stream", "not a regular file")

PREDICT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary", "description": f"a video or audio clip ({accepted_types()})"}}}},
        "application/json": {"schema": {"type": "object", "required": ["text"], "properties": {
            "text": {"type": "string", "description": "a transcript to score without media (text models only)"}}}},
    },
}
ERROR_RESPONSES = {s: {"description": d, "content": {"application/json": {"example": ApiError(s, c, d).body()}}}
                   for s, c, d in ((400, BAD_REQUEST, "malformed body, no `file` field, empty upload"),
                                   (401, UNAUTHORIZED, "missing or wrong bearer token"),
                                   (413, TOO_LARGE, "upload over --max-upload-mb"),
                                   (415, UNSUPPORTED_TYPE, "not video or audio (by type, or by its bytes: not_media)"),
                                   (422, UNDECODABLE, "media that fails to decode, or that the model cannot read"),
                                   (503, BUSY, "queue full: retry after Retry-After seconds"))}


def _error_response(err: ApiError) -> JSONResponse:
    return JSONResponse(err.body(), status_code=err.status, headers=err.headers)


def failure_error(pred: Any, folder: Path | None = None) -> ApiError:
    """The 4xx of a clip ``predict()`` could not score (its ``error`` is ``[stage] message``)."""
    err = str(pred.error or "")
    if folder is not None:  # never show the server's temporary paths
        err = err.replace(str(folder), pred.path)
    stage, _, cause = err.partition("] ")
    stage = stage.lstrip("[")
    if stage == "decode" and cause.startswith(NOT_MEDIA_CAUSES):
        return ApiError(415, NOT_MEDIA, f"the upload is not a video or audio file ({cause})")
    if stage == "decode":
        return ApiError(422, UNDECODABLE, f"the upload could not be decoded ({cause})")
    if stage == "input" and "empty" in cause:
        return ApiError(400, EMPTY, f"the upload is empty ({cause})")
    return ApiError(422, UNUSABLE, f"the clip cannot be scored: {err}")


def model_info(predictor: Any) -> dict[str, Any]:
    """``GET /v1/model``: the checkpoint's file name, model, FeatureSpec and recorded metrics."""
    ck = predictor.checkpoint
    spec = getattr(ck, "spec", None)
    cfg = predictor.extract_config
    return {"checkpoint": Path(getattr(ck, "path", "") or "").name, "model": ck.model_name,
            "modalities": list(predictor.modalities), "feature_spec": spec.to_dict() if spec is not None else None,
            "speech_recognizer": getattr(cfg, "asr", None), "metrics": getattr(ck, "metrics", {}) or {},
            "toolkit_version": getattr(ck, "toolkit_version", "")}


class _Gate:
    """ASGI middleware: the token check (every route but /healthz) and the request metrics."""

    def __init__(self, app: Any, token: str | None, metrics: Metrics):
        self.app, self.token, self.metrics = app, token, metrics

    def _authorized(self, scope: dict) -> bool:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode()):
            return True
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == TOKEN_COOKIE and hmac.compare_digest(urllib.parse.unquote(value).encode(), self.token.encode()):
                return True
        return False

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        path = scope.get("path", "")
        try:
            if self.token is None or path in OPEN_PATHS or self._authorized(scope):
                await self.app(scope, receive, sending)
                return
            query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = (query.get("token") or [""])[0]
            if path == "/" and given and hmac.compare_digest(given.encode(), self.token.encode()):
                response: Response = RedirectResponse("/", status_code=303)
                response.set_cookie(TOKEN_COOKIE, urllib.parse.quote(self.token), httponly=True, samesite="strict")
            else:
                response = _error_response(ApiError(401, UNAUTHORIZED, "this server needs its token: send "
                                                    "'Authorization: Bearer TOKEN' (the page: open /?token=TOKEN)",
                                                    {"WWW-Authenticate": "Bearer"}))
            await response(scope, receive, sending)
        finally:
            route = path if path in METRIC_ROUTES else ("/static" if path.startswith("/static/") else "other")
            self.metrics.observe(route, scope.get("method", ""), status[0], time.perf_counter() - t0)


async def _read_json(request: Request) -> dict:
    """The JSON object of a text-only request, read with a size limit."""
    check_length(request.headers, MAX_JSON_BYTES)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_JSON_BYTES:
            raise ApiError(413, TOO_LARGE, f"a JSON body is at most {MAX_JSON_BYTES} bytes")
    try:
        doc = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, BAD_REQUEST, f"the body is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
        raise ApiError(400, BAD_REQUEST, 'a JSON body is {"text": "..."}; a clip goes in the multipart field "file"')
    if not doc["text"].strip():
        raise ApiError(400, EMPTY, "the text is empty")
    if len(doc["text"]) > MAX_TEXT_CHARS:
        raise ApiError(413, TOO_LARGE, f"the text is over {MAX_TEXT_CHARS} characters")
    return doc


def create_app(config: ServeConfig = ServeConfig(), predictor: Any = None, warm: bool = True) -> FastAPI:
    """The app; the checkpoint (``config.checkpoint``, or ``predictor`` already loaded) is loaded and its
    workers started when the app starts (lifespan), and stopped, their temp folder removed, when it stops."""
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        from ..prediction import Predictor
        from ..threads import set_threads

        set_threads(config.threads)
        pred = predictor if predictor is not None else Predictor.load(config.checkpoint)
        pool = ModelPool(pred, workers=config.workers, queue_size=config.queue)
        pool.start(warm=warm)
        app.state.pool, app.state.info = pool, model_info(pred)
        try:
            yield
        finally:
            pool.stop()

    from .. import __version__

    app = FastAPI(title="msa_toolkit", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Sentiment of video and audio clips: upload -> Whisper -> model. "
                              "The answer of /v1/predict is the document of `msa predict --json` for one clip.")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(ApiError(exc.status_code, STATUS_CODES.get(exc.status_code, BAD_REQUEST),
                                        str(exc.detail), getattr(exc, "headers", None)))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors())
        return _error_response(ApiError(422, INVALID, f"invalid request ({where})"))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return _error_response(ApiError(500, INTERNAL, f"internal error ({type(exc).__name__}); the server "
                                                       "keeps running"))

    @app.post("/v1/predict", openapi_extra={"requestBody": PREDICT_BODY}, responses=ERROR_RESPONSES,
              summary="Sentiment of one clip (or a text)")
    async def predict_route(request: Request, segments: bool = Query(
            False, description="also score each Whisper sentence segment (the timeline)")) -> Response:
        """The `msa predict --json` document for the uploaded clip: score in [-3, 3], polarity, 7-class label,
        transcript, modalities present and why one is absent; with `segments=true` one score per segment."""
        from ..errors import MSAError
        from ..prediction_types import to_json

        pool: ModelPool = request.app.state.pool
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("multipart/form-data", "application/json"):
            raise ApiError(415, UNSUPPORTED_TYPE, f"send multipart/form-data (a clip in field 'file') or "
                                                  f"application/json ({{\"text\": ...}}), not {kind or 'no type'!r}")
        t0 = time.perf_counter()
        size = 0
        try:
            with pool.admitted() as folder:
                if kind == "application/json":
                    text = (await _read_json(request))["text"]
                    try:
                        pred = await pool.call(predict_text, text, segments)
                    except MSAError as e:
                        raise ApiError(422, UNUSABLE, str(e)) from None
                else:
                    check_length(request.headers, config.max_upload_bytes + MULTIPART_OVERHEAD)
                    upload = await receive_upload(request.headers["content-type"], request.stream(), folder,
                                                  config.max_upload_bytes)
                    size = upload.size
                    pred = await pool.call(predict_media, upload.path, segments)
                    pred = dataclasses.replace(pred, path=upload.name)
                    if not pred.ok:
                        raise failure_error(pred, folder)
        except Busy as b:
            metrics.prediction(BUSY)
            raise ApiError(503, BUSY, str(b), {"Retry-After": str(b.retry_after)}) from None
        except ClientDisconnect:
            metrics.prediction("disconnected", size)
            raise ApiError(400, BAD_REQUEST, "the client went away during the upload") from None
        except ApiError as e:
            metrics.prediction(e.code, size)
            raise
        metrics.prediction("ok", size)
        info = request.app.state.info
        extra = {"checkpoint": info["checkpoint"], "model": info["model"],
                 "seconds": round(time.perf_counter() - t0, 3)}
        return Response(to_json([pred], extra, segments), media_type="application/json")

    @app.get("/v1/model", summary="The loaded checkpoint")
    async def model_route(request: Request) -> dict:
        """The checkpoint's file name, registry model, FeatureSpec (how features are extracted) and the metrics
        recorded with it (e.g. valid/test scores)."""
        return request.app.state.info

    @app.get("/healthz", summary="Liveness (no token needed)")
    async def health(request: Request) -> dict:
        return {"status": "ok", **request.app.state.pool.stats()}

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def metrics_route(request: Request) -> PlainTextResponse:
        """Request counts and latencies, predictions by outcome, queue gauges (Prometheus text format)."""
        pool: ModelPool = request.app.state.pool
        return PlainTextResponse(metrics.render(pool.stats), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_docs(app)
    app.add_middleware(_Gate, token=config.token, metrics=metrics)
    return app


def _add_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the locally installed assets of ``fastapi-offline`` (works offline)."""
    import fastapi_offline
    from fastapi.openapi.docs import get_swagger_ui_html

    assets = Path(fastapi_offline.__file__).resolve().parent / "static"
    app.mount(DOCS_ASSETS, StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="msa_toolkit API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png")
