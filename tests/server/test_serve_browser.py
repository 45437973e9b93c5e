"""The page of `msa serve` in a real browser: headless Chromium (Debian's package, driven over the DevTools pipe)
opens the page of a real `msa serve` process on loopback, uploads the bundled sample clip and sees the score,
the transcript and the timeline; the timeline's cursor follows the player. `.ci/run` installs Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from cdp_pipe import Browser, find_chromium

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "samples" / "positive.mp4"
#: where the screenshot is kept when $MSA_KEEP_SCREENSHOT=1 (committed: benchmarks/results/serve/page.png)
SCREENSHOT_DIR = ROOT / "benchmarks" / "results" / "serve"
#: seconds for the server to load the model and answer /healthz (a cold start on a busy 2-core machine)
START_TIMEOUT_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "msa_toolkit", "serve", "--host", "127.0.0.1",
                                 "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"msa serve exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"msa serve did not answer /healthz in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def browser():
    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run installs Debian's chromium package")
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does it in CI)")
    b = Browser(binary)
    yield b
    b.close()


def test_the_page_scores_an_uploaded_clip(server, browser, tmp_path):
    browser.navigate(server + "/")
    assert browser.wait_for("document.body.dataset.state === 'idle' && "
                            "document.getElementById('model-line').textContent.includes('text_only')", 30)
    browser.set_file("#file", SAMPLE)
    state = browser.wait_for("['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state",
                             120)
    assert state == "done", browser.evaluate("document.getElementById('status').textContent")
    page = browser.evaluate("""(() => ({
        score: document.getElementById('score').textContent,
        polarity: document.getElementById('polarity').textContent,
        transcript: document.getElementById('transcript').textContent,
        segments: [...document.querySelectorAll('#transcript span.segment')].map(s => s.className),
        bars: [...document.querySelectorAll('#timeline-bars .seg')].map(b => [b.style.left, b.style.width]),
        modalities: [...document.querySelectorAll('#modalities .chip.on')].map(c => c.textContent),
        resultShown: !document.getElementById('result').hidden,
    }))()""")
    assert page["resultShown"]
    score = float(page["score"])
    assert score > 0.5 and page["polarity"] == "positive", page  # "I really love this movie ..."
    assert "love this movie" in page["transcript"].replace("  ", " ")
    assert browser.evaluate("document.querySelectorAll('#transcript span.word').length") >= 10  # words with times
    assert page["segments"] and all("pos" in c or "neu" in c or "neg" in c for c in page["segments"])
    assert len(page["bars"]) == len(page["segments"]) >= 1
    assert all(left.endswith("%") and width.endswith("%") for left, width in page["bars"])
    assert page["modalities"] == ["text"]

    # the timeline's cursor follows the player: seek and read where it is
    duration = browser.evaluate("document.getElementById('player').duration")
    if duration and duration > 3:
        at = browser.evaluate("""new Promise(done => { const v = document.getElementById('player');
            v.addEventListener('seeked', () => setTimeout(() => done({cursor: document.body.dataset.cursor,
                now: [...document.querySelectorAll('#transcript span.word.now')].map(w => +w.dataset.start)}), 50),
                {once: true});
            v.currentTime = 3; })""", await_promise=True)
        assert float(at["cursor"]) == pytest.approx(3 / duration, abs=0.05)
        assert all(s <= 3 for s in at["now"]) and len(at["now"]) <= 1  # the word spoken at 3 s, if any
    else:
        pytest.fail(f"the browser cannot play the sample clip (duration {duration}): the timeline cannot follow it")

    browser.evaluate("window.scrollTo(0, 0)")
    keep = os.environ.get("MSA_KEEP_SCREENSHOT") == "1"
    shot = browser.screenshot((SCREENSHOT_DIR if keep else tmp_path) / "page.png")
    assert shot.stat().st_size > 10_000


def test_a_bad_upload_shows_the_servers_error(server, browser, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a video")
    browser.navigate(server + "/")
    browser.wait_for("document.body.dataset.state === 'idle'", 30)
    browser.set_file("#file", bad)
    assert browser.wait_for("document.body.dataset.state === 'error'", 60)
    status = browser.evaluate("document.getElementById('status').textContent")
    assert "unsupported_type" in status and "415" in status


def test_recording_from_the_webcam_is_uploaded_and_scored(server, browser):
    """Chromium's synthetic camera and microphone (a test pattern and a beep): the page records a WebM clip and the
    server scores it; a beep holds no words, so the answer says the text modality is absent."""
    browser.navigate(server + "/")
    browser.wait_for("document.body.dataset.state === 'idle'", 30)
    assert browser.evaluate("!document.getElementById('record-box').hidden"), "recording is offered on localhost"
    browser.evaluate("document.getElementById('record').click()")
    state = browser.wait_for("['done', 'error'].includes(document.body.dataset.state) && document.body.dataset.state",
                             90)
    status = browser.evaluate("document.getElementById('status').textContent")
    assert state == "done", status
    page = browser.evaluate("""(() => ({
        modalities: [...document.querySelectorAll('#modalities li')].map(li => li.textContent),
        transcript: document.getElementById('transcript').textContent,
        flags: document.getElementById('flags').textContent,
        score: document.getElementById('score').textContent,
    }))()""")
    assert page["modalities"] == ["textabsent: no speech found"] and page["transcript"] == "(no speech found)"
    assert "score uninformative" in page["flags"]
    float(page["score"])  # a number is shown, with the caveat above


def test_the_api_docs_render_without_the_network(server, browser):
    """/docs is Swagger UI from the installed fastapi-offline files: it renders every route with no CDN."""
    browser.navigate(server + "/docs")
    assert browser.wait_for("document.querySelectorAll('.opblock').length", 30) == 4  # predict, model, healthz, metrics
    assert "/v1/predict" in browser.evaluate("document.body.innerText")
