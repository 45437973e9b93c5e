"""`msa serve`'s HTTP API through FastAPI's test client: every route, every bad input, the token, the queue,
and the answer being what `msa predict --json` says for the same clip."""

from __future__ import annotations

import dataclasses
import json
import re
import threading
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from msa_toolkit.errors import RunNotice  # noqa: E402
from msa_toolkit.prediction import Predictor, predict  # noqa: E402
from msa_toolkit.server import ServeConfig, create_app  # noqa: E402
from msa_toolkit.server.app import STATIC_DIR  # noqa: E402
from msa_toolkit.server.launch import exposure_notice  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "samples" / "positive.mp4"
ASSETS = ROOT / "tests" / "assets"
TOKEN = "s3cret-token"


def garbled_mp4() -> bytes:
    """The sample with its media data overwritten by noise: it opens as mp4 (the index is intact) and fails to decode."""
    b = bytearray(SAMPLE.read_bytes())
    moov, mdat = b.find(b"moov"), b.find(b"mdat")
    assert 0 < mdat < moov, "the sample's index is expected after its media data"
    rng = np.random.default_rng(0)
    b[mdat + 100:moov - 100] = rng.integers(0, 256, moov - 200 - mdat, dtype=np.uint8).tobytes()
    return bytes(b)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load()


@pytest.fixture(scope="module")
def app_and_client(predictor):
    app = create_app(ServeConfig(max_upload_mb=1.0), predictor=predictor)
    with TestClient(app) as client:
        yield app, client


@pytest.fixture()
def client(app_and_client):
    app, client = app_and_client
    yield client
    # every request's private folder is gone once it is answered, whatever happened
    assert list(app.state.pool.temp_dir.iterdir()) == []


def _error(r, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["error"]["status"] == status and body["error"]["code"] == code, body
    return body["error"]["message"]


# ---- the routes --------------------------------------------------------------------------------------
def test_upload_answers_what_msa_predict_says(client, predictor, tmp_path):
    with SAMPLE.open("rb") as f:
        r = client.post("/v1/predict", files={"file": ("my clip.mp4", f, "video/mp4")})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model"] == "text_only" and doc["checkpoint"] == "model.safetensors"
    [got] = doc["predictions"]
    [want] = predict([SAMPLE], predictor=predictor, cache_dir=tmp_path)
    want = json.loads(json.dumps(want.to_dict(False)))
    assert got["path"] == "my clip.mp4"  # the client's name, echoed; never the server's temp path
    for d in (got, want):
        d.pop("path"), d.pop("timings")
    assert got == want
    assert "segments" not in got and got["polarity"] == "positive" and "love this movie" in got["transcript"]


def test_segments_on_request(client):
    r = client.post("/v1/predict?segments=true", files={"file": ("a.mp4", SAMPLE.read_bytes(), "video/mp4")})
    assert r.status_code == 200, r.text
    [p] = r.json()["predictions"]
    assert p["segments"] and all({"start", "end", "text", "score", "polarity"} <= set(s) for s in p["segments"])
    assert p["segments"][0]["start"] < p["segments"][-1]["end"] <= p["duration"]
    assert " ".join(w["text"].strip() for w in p["words"]) == p["transcript"]  # the transcript with word times
    assert all(0 <= w["start"] <= w["end"] <= p["duration"] for w in p["words"])


def test_text_only_json(client, predictor):
    r = client.post("/v1/predict", json={"text": "This film was terrible. I hated every minute of it."})
    assert r.status_code == 200, r.text
    [p] = r.json()["predictions"]
    assert p["path"] == "<text>" and p["polarity"] == "negative" and p["modalities_present"] == ["text"]
    assert p["score"] == pytest.approx(predictor.predict_text("This film was terrible. I hated every minute of it.").score)


def test_audio_only_upload_and_a_name_that_is_a_path(client, app_and_client):
    r = client.post("/v1/predict", files={"file": ("../../etc/evil.wav", (ASSETS / "speech.wav").read_bytes(),
                                                   "audio/wav")})
    assert r.status_code == 200, r.text
    [p] = r.json()["predictions"]
    assert p["path"] == "evil.wav" and p["speech_found"] is True
    assert not (ROOT / "etc" / "evil.wav").exists()


def test_model_route(client):
    info = client.get("/v1/model").json()
    assert info["model"] == "text_only" and info["checkpoint"] == "model.safetensors"
    assert info["modalities"] == ["text"] and info["speech_recognizer"] == "whisper"
    [text] = info["feature_spec"]["extractors"]
    assert (text["modality"], text["name"], text["dim"]) == ("text", "minilm", 384)
    assert info["metrics"], "the bundled checkpoint records its metrics"


def test_health_metrics_docs_and_page(client):
    h = client.get("/healthz")
    assert h.status_code == 200 and h.json()["status"] == "ok" and h.json()["workers"] == 1
    client.post("/v1/predict", files={"file": ("x.pdf", b"%PDF", "application/pdf")})
    text = client.get("/metrics").text
    assert re.search(r'^msa_serve_requests_total\{route="/healthz",method="GET",status="200"\} [1-9]', text, re.M)
    assert re.search(r'^msa_serve_requests_total\{route="/v1/predict",method="POST",status="415"\} [1-9]', text, re.M)
    assert re.search(r'^msa_serve_request_duration_seconds_bucket\{route="/v1/predict",le="\+Inf"\} [1-9]', text, re.M)
    assert re.search(r'^msa_serve_predictions_total\{outcome="unsupported_type"\} [1-9]', text, re.M)
    assert "# TYPE msa_serve_request_duration_seconds histogram" in text and "msa_serve_waiting 0" in text
    for line in text.splitlines():  # the exposition format: comments or `name{labels} value`
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+-]+', line), line
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    page = client.get("/")
    assert page.status_code == 200 and 'id="timeline"' in page.text and client.get("/static/app.js").status_code == 200


def test_the_page_loads_nothing_from_elsewhere():
    for f in STATIC_DIR.iterdir():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", f.read_text()), f"{f.name} refers to another host"


# ---- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, data, ctype, status, code", [
    ("notes.txt", b"hello", "text/plain", 415, "unsupported_type"),          # a type that is not media
    ("picture", b"\x89PNG....", "image/png", 415, "unsupported_type"),       # no extension, not media by type
    ("clip.mp4", b"this is not a video at all", "video/mp4", 415, "not_media"),   # bytes that are not media
    ("clip.mp4", b"", "video/mp4", 400, "empty"),
    ("clip.mp4", None, "video/mp4", 422, "undecodable"),                     # opens as mp4, fails to decode
    ("noaudio.mp4", (ASSETS / "noaudio.mp4").read_bytes(), "video/mp4", 422, "unusable"),  # no sound for a text model
])
def test_bad_uploads(client, name, data, ctype, status, code):
    data = garbled_mp4() if data is None else data
    msg = _error(client.post("/v1/predict", files={"file": (name, data, ctype)}), status, code)
    assert "/tmp" not in msg and "req-" not in msg  # no server paths in messages


def test_over_the_limit_by_content_length_and_while_streaming(client):
    big = b"\0" * (1024 * 1024 + 1)  # the app's limit is 1 MiB
    _error(client.post("/v1/predict", files={"file": ("big.mp4", big, "video/mp4")}), 413, "too_large")

    def chunked():  # no Content-Length: the limit is enforced as the bytes arrive
        head = b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n' \
               b'Content-Type: video/mp4\r\n\r\n'
        yield head
        for _ in range(40):
            yield b"\0" * 65536
        yield b"\r\n--B--\r\n"

    r = client.post("/v1/predict", content=chunked(), headers={"content-type": "multipart/form-data; boundary=B"})
    _error(r, 413, "too_large")


@pytest.mark.parametrize("kwargs, status, code", [
    ({"files": {"other": ("a.mp4", b"x", "video/mp4")}}, 400, "missing_file"),
    ({"files": [("file", ("a.mp4", b"x", "video/mp4")), ("file", ("b.mp4", b"y", "video/mp4"))]}, 400, "bad_request"),
    ({"content": b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\nabc",
      "headers": {"content-type": "multipart/form-data; boundary=B"}}, 400, "bad_request"),   # cut short
    ({"content": b"x", "headers": {"content-type": "multipart/form-data"}}, 400, "bad_request"),   # no boundary
    ({"content": b"abc", "headers": {"content-type": "text/plain"}}, 415, "unsupported_type"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "bad_request"),
    ({"json": {"words": "hi"}}, 400, "bad_request"),
    ({"json": {"text": "   "}}, 400, "empty"),
    ({"json": {"text": "a" * 20001}}, 413, "too_large"),
])
def test_bad_requests(client, kwargs, status, code):
    _error(client.post("/v1/predict", **kwargs), status, code)


def test_bad_parameter_and_unknown_routes(client):
    _error(client.post("/v1/predict?segments=maybe", json={"text": "hi"}), 422, "invalid")
    _error(client.get("/v2/nothing"), 404, "not_found")
    _error(client.get("/v1/predict"), 405, "method_not_allowed")


# ---- the token ---------------------------------------------------------------------------------------
def _stub_predictor(predict_text=None) -> SimpleNamespace:
    """A stand-in with the Predictor attributes the app reads; its predict_text is the test's."""
    ck = SimpleNamespace(model_name="stub", path="/x/stub.safetensors", spec=None, metrics={"test": {"mae": 1.0}},
                         toolkit_version="0")
    from msa_toolkit.prediction_types import Prediction

    def default(text, segments=False):
        return Prediction(path="<text>", score=1.0, transcript=text, speech_found=True, modalities_present=("text",))

    return SimpleNamespace(checkpoint=ck, extract_config=SimpleNamespace(asr=None), modalities=("text",),
                           predict_text=predict_text or default)


def test_token_guards_every_route_but_healthz():
    app = create_app(ServeConfig(token=TOKEN), predictor=_stub_predictor(), warm=False)
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        for method, path in (("get", "/v1/model"), ("get", "/metrics"), ("get", "/docs"), ("get", "/openapi.json"),
                             ("get", "/"), ("get", "/static/app.js"), ("post", "/v1/predict")):
            r = getattr(c, method)(path)
            _error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
            _error(getattr(c, method)(path, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
        ok = {"Authorization": f"Bearer {TOKEN}"}
        assert c.get("/v1/model", headers=ok).json()["model"] == "stub"
        assert c.post("/v1/predict", json={"text": "fine"}, headers=ok).json()["predictions"][0]["score"] == 1.0
        _error(c.get("/?token=wrong", follow_redirects=False), 401, "unauthorized")
        r = c.get(f"/?token={TOKEN}", follow_redirects=False)  # the page: the token once, then a cookie
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/static/app.js").status_code == 200  # the client keeps the cookie


def test_exposed_bind_without_token_warns(monkeypatch):
    assert exposure_notice(ServeConfig(host="0.0.0.0")) is not None
    assert exposure_notice(ServeConfig(host="192.168.1.5")) is not None
    assert exposure_notice(ServeConfig(host="0.0.0.0", token=TOKEN)) is None
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert exposure_notice(ServeConfig(host=host)) is None
    import uvicorn

    from msa_toolkit.server import serve

    ran = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self: ran.append((self.config.host, self.config.port)))
    with pytest.warns(RunNotice, match="without --token"):
        serve(ServeConfig(host="0.0.0.0", port=8123))
    assert ran == [("0.0.0.0", 8123)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RunNotice)
        serve(ServeConfig())


def test_cli_prints_the_warning(monkeypatch, capsys):
    import uvicorn

    from msa_toolkit.cli.main import main

    monkeypatch.setattr(uvicorn.Server, "run", lambda self: None)
    assert main(["serve", "--host", "0.0.0.0", "--port", "8124"]) == 0
    assert "without --token" in capsys.readouterr().err


# ---- the queue and failures --------------------------------------------------------------------------
def test_full_queue_answers_503_with_retry_after():
    started, release = threading.Event(), threading.Event()

    def slow(text, segments=False):
        started.set()
        assert release.wait(30)
        return _stub_predictor().predict_text(text)

    app = create_app(ServeConfig(workers=1, queue=0), predictor=_stub_predictor(slow), warm=False)
    with TestClient(app) as c:
        first: dict = {}
        t = threading.Thread(target=lambda: first.setdefault("r", c.post("/v1/predict", json={"text": "one"})))
        t.start()
        assert started.wait(30)
        r = c.post("/v1/predict", json={"text": "two"})
        _error(r, 503, "busy")
        assert int(r.headers["retry-after"]) >= 1
        assert c.get("/healthz").json()["running"] == 1
        release.set()
        t.join(30)
        assert first["r"].status_code == 200
        assert c.post("/v1/predict", json={"text": "three"}).status_code == 200  # the slot is free again
        assert re.search(r'^msa_serve_predictions_total\{outcome="busy"\} 1$', c.get("/metrics").text, re.M)


def test_a_crash_in_the_model_is_a_500_and_the_server_keeps_serving():
    calls = []

    def flaky(text, segments=False):
        calls.append(text)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return _stub_predictor().predict_text(text)

    app = create_app(ServeConfig(), predictor=_stub_predictor(flaky), warm=False)
    with TestClient(app, raise_server_exceptions=False) as c:
        _error(c.post("/v1/predict", json={"text": "a"}), 500, "internal")
        assert c.post("/v1/predict", json={"text": "b"}).status_code == 200
        assert c.get("/healthz").json()["admitted"] == 0


def test_the_temp_folder_is_private_and_removed_at_shutdown():
    app = create_app(ServeConfig(), predictor=_stub_predictor(), warm=False)
    with TestClient(app):
        folder = app.state.pool.temp_dir
        assert folder.is_dir() and (folder.stat().st_mode & 0o777) == 0o700
    assert not folder.exists()


def test_config_refuses_nonsense():
    from msa_toolkit.errors import MSAError

    for kw in ({"max_upload_mb": 0}, {"workers": 0}, {"queue": -1}, {"port": 70000}, {"token": " "}):
        with pytest.raises(MSAError):
            ServeConfig(**kw)
    assert dataclasses.replace(ServeConfig(), max_upload_mb=2).max_upload_bytes == 2 * 1024 * 1024


def test_each_worker_has_its_own_extractors_and_a_share_of_the_cores(predictor):
    from msa_toolkit.extraction import LoadedExtractors
    from msa_toolkit.extraction.lanes import available_cores
    from msa_toolkit.server.engine import worker_predictor

    w = worker_predictor(predictor, 2)
    assert w.checkpoint is predictor.checkpoint and w._extractors is None
    assert w.extract_config.asr_params["cpu_threads"] == max(1, available_cores() // 2)
    # a runtime parameter: the features, and so the answers, are those of the checkpoint's spec
    assert LoadedExtractors(w.extract_config).spec.fingerprint() == \
        LoadedExtractors(predictor.extract_config).spec.fingerprint()


def test_the_access_log_never_shows_the_token():
    import logging

    from msa_toolkit.server.launch import RedactToken

    rec = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
                            ("127.0.0.1:5", "GET", f"/?token={TOKEN}&x=1", "1.1", 303), None)
    assert RedactToken().filter(rec)
    assert TOKEN not in rec.getMessage() and "/?token=***&x=1" in rec.getMessage()


def test_text_to_a_model_without_text_is_a_422():
    from msa_toolkit.errors import SpecMismatchError

    def refuse(text, segments=False):
        raise SpecMismatchError("the checkpoint reads audio+vision only, no text: send media")

    app = create_app(ServeConfig(), predictor=_stub_predictor(refuse), warm=False)
    with TestClient(app) as c:
        assert "no text" in _error(c.post("/v1/predict", json={"text": "hello"}), 422, "unusable")
