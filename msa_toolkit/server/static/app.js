// The page of `msa serve`: pick, drop or record a clip, POST it to /v1/predict?segments=true, show the answer.
// Plain browser JavaScript, no build step and nothing loaded from elsewhere (it works offline).
"use strict";

const RECORD_SECONDS = 5;
const SCORE_MAX = 3;
const MODALITIES = ["text", "audio", "vision"];
const $ = (id) => document.getElementById(id);
let modelInfo = null;
let segments = [];
let clipDuration = 0;

function polarityClass(score) {
  const c = Math.round(Math.max(-SCORE_MAX, Math.min(SCORE_MAX, score)));
  return c > 0 ? "pos" : c < 0 ? "neg" : "neu";
}

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function setState(state) {
  document.body.dataset.state = state;
}

async function errorText(response) {
  try {
    const body = await response.json();
    if (body && body.error) return `${body.error.message} (HTTP ${response.status}, ${body.error.code})`;
  } catch (e) { /* not JSON */ }
  return `HTTP ${response.status}`;
}

async function loadModel() {
  const r = await fetch("/v1/model");
  if (!r.ok) {
    $("model-line").textContent = "model information unavailable: " + await errorText(r);
    return;
  }
  modelInfo = await r.json();
  $("model-line").textContent =
    `model ${modelInfo.model} (${modelInfo.checkpoint}), reads ${modelInfo.modalities.join(" + ")}` +
    (modelInfo.speech_recognizer ? `, speech recognised by ${modelInfo.speech_recognizer}` : "");
}

async function predict(file) {
  setState("working");
  $("result").hidden = true;
  setStatus(`Uploading ${file.name} and scoring it (transcription runs on the server)...`);
  const player = $("player");
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(file);
  const form = new FormData();
  form.append("file", file, file.name);
  let response;
  try {
    response = await fetch("/v1/predict?segments=true", { method: "POST", body: form });
  } catch (e) {
    setStatus("The server could not be reached: " + e, true);
    setState("error");
    return;
  }
  if (!response.ok) {
    setStatus(await errorText(response), true);
    setState("error");
    return;
  }
  const doc = await response.json();
  show(doc.predictions[0], doc);
  setStatus(`Scored in ${doc.seconds.toFixed(2)} s by ${doc.model}.`);
  setState("done");
}

function show(p, doc) {
  $("result").hidden = false;
  const cls = polarityClass(p.score);
  $("score").textContent = (p.score >= 0 ? "+" : "") + p.score.toFixed(2);
  $("score").className = cls;
  $("polarity").textContent = p.polarity;
  $("polarity").className = cls;
  $("label7").textContent = `${p.label7} (7-class ${p.class7 > 0 ? "+" : ""}${p.class7})`;
  showModalities(p);
  segments = (p.segments || []).slice().sort((a, b) => a.start - b.start);
  showTranscript(p);
  clipDuration = p.duration || $("player").duration || (segments.length ? segments[segments.length - 1].end : 0);
  drawTimeline();
}

function showModalities(p) {
  const list = $("modalities");
  list.replaceChildren();
  const used = modelInfo ? modelInfo.modalities : MODALITIES;
  for (const m of used) {
    const li = document.createElement("li");
    const chip = document.createElement("span");
    const on = p.modalities_present.includes(m);
    chip.className = "chip " + (on ? "on" : "off");
    chip.textContent = m;
    li.append(chip);
    const why = document.createElement("span");
    why.className = "muted";
    why.textContent = on ? "used" : "absent" + (p.absent[m] ? ": " + p.absent[m] : "");
    li.append(why);
    list.append(li);
  }
  const flags = $("flags");
  flags.replaceChildren();
  for (const f of p.flags) {
    const li = document.createElement("li");
    li.textContent = f;
    flags.append(li);
  }
}

function showTranscript(p) {
  const box = $("transcript");
  box.replaceChildren();
  if (!p.transcript) {
    box.textContent = "(no speech found)";
    return;
  }
  const parts = segments.length ? segments : [{ text: p.transcript, score: p.score, start: 0, end: p.duration || 0 }];
  const words = (p.words || []).filter((w) => w.start !== null && w.end !== null);
  parts.forEach((s, i) => {
    const span = document.createElement("span");
    span.className = "segment " + polarityClass(s.score);
    span.dataset.index = i;
    span.title = `${s.start.toFixed(1)}-${s.end.toFixed(1)} s: ${(s.score >= 0 ? "+" : "") + s.score.toFixed(2)}`;
    // the segment's words with their times (the one being spoken is underlined during playback)
    const own = segments.length ? words.filter((w) => (w.start + w.end) / 2 >= s.start && (w.start + w.end) / 2 <= s.end) : [];
    if (own.length) {
      own.forEach((w, k) => {
        const ws = document.createElement("span");
        ws.className = "word";
        ws.dataset.start = w.start;
        ws.dataset.end = w.end;
        ws.textContent = w.text.trim();
        span.append(ws);
        if (k < own.length - 1) span.append(document.createTextNode(" "));
      });
    } else {
      span.textContent = s.text;
    }
    box.append(span, document.createTextNode(" "));
  });
}

function drawTimeline() {
  const bars = $("timeline-bars");
  bars.replaceChildren();
  $("axis-end").textContent = clipDuration ? clipDuration.toFixed(1) + " s" : "";
  if (!clipDuration) return;
  segments.forEach((s, i) => {
    const bar = document.createElement("div");
    const h = Math.max(0.04, Math.min(1, Math.abs(s.score) / SCORE_MAX)) * 50;
    bar.className = "seg " + polarityClass(s.score);
    bar.dataset.index = i;
    bar.style.left = (100 * s.start / clipDuration) + "%";
    bar.style.width = Math.max(0.5, 100 * (s.end - s.start) / clipDuration) + "%";
    bar.style.height = h + "%";
    bar.style.top = s.score >= 0 ? (50 - h) + "%" : "50%";
    bar.style.background = getComputedStyle(document.documentElement).getPropertyValue(
      "--" + polarityClass(s.score));
    bar.title = `${s.start.toFixed(1)}-${s.end.toFixed(1)} s: ${s.score.toFixed(2)} ${s.text}`;
    bars.append(bar);
  });
  follow();
}

function follow() {
  // the cursor and the highlighted segment follow the player's position
  const t = $("player").currentTime || 0;
  const frac = clipDuration ? Math.min(1, t / clipDuration) : 0;
  $("cursor").style.left = (100 * frac) + "%";
  document.body.dataset.cursor = frac.toFixed(4);
  const active = segments.findIndex((s) => t >= s.start && t <= s.end);
  for (const el of document.querySelectorAll(".seg, #transcript span.segment")) {
    el.classList.toggle("active", Number(el.dataset.index) === active && segments.length > 0);
  }
  for (const w of document.querySelectorAll("#transcript span.word")) {
    w.classList.toggle("now", t >= Number(w.dataset.start) && t <= Number(w.dataset.end));
  }
}

function animate() {
  follow();
  if (!$("player").paused) requestAnimationFrame(animate);
}

function setUpInput() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => { if (e.target.files.length) predict(e.target.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) predict(e.dataTransfer.files[0]);
  });
  const player = $("player");
  player.addEventListener("timeupdate", follow);
  player.addEventListener("seeked", follow);
  player.addEventListener("play", () => requestAnimationFrame(animate));
  player.addEventListener("loadedmetadata", () => { if (!clipDuration && player.duration) { clipDuration = player.duration; drawTimeline(); } });
  $("timeline").addEventListener("click", (e) => {
    const box = $("timeline").getBoundingClientRect();
    if (clipDuration) player.currentTime = clipDuration * (e.clientX - box.left) / box.width;
  });
}

function setUpRecording() {
  // shown only where the browser can record (getUserMedia + MediaRecorder, a secure context such as localhost)
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder)) return;
  $("record-box").hidden = false;
  $("record").addEventListener("click", async () => {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    } catch (e) {
      $("record-state").textContent = "no camera/microphone: " + e.message;
      return;
    }
    const chunks = [];
    const rec = new MediaRecorder(stream);
    rec.ondataavailable = (e) => { if (e.data.size) chunks.push(e.data); };
    rec.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      $("record").disabled = false;
      $("record-state").textContent = "";
      const type = (rec.mimeType || "video/webm").split(";")[0];
      const ext = type.includes("mp4") ? "mp4" : "webm";
      predict(new File([new Blob(chunks, { type })], "recording." + ext, { type }));
    };
    $("record").disabled = true;
    rec.start();
    let left = RECORD_SECONDS;
    $("record-state").textContent = `recording... ${left} s`;
    const tick = setInterval(() => {
      left -= 1;
      $("record-state").textContent = `recording... ${left} s`;
      if (left <= 0) { clearInterval(tick); rec.stop(); }
    }, 1000);
  });
}

setState("idle");
setUpInput();
setUpRecording();
loadModel();
