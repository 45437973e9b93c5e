"""A half-truncated MP4 whose index is at the front (issue 31): it opens and declares its full duration,
decoding stops early without an error. The bundle and manifest record decoded against declared
duration, the summary warns, and ``--require complete`` fails the file."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from msa_toolkit.cli.main import main
from msa_toolkit.extraction import ExtractConfig, extract

#: decodes the audio only, no model (fast)
CHEAP = ExtractConfig(asr=None, text=None, audio="opensmile", vision=None)


def _truncated_copy(src: Path, dst: Path, keep: float = 0.5) -> Path:
    """``src`` remuxed with its moov atom at the front (faststart), cut at the packet boundary nearest
    ``keep`` of its media data: a file that opens, declares its full length and decodes without error."""
    whole = dst.parent.parent / "whole.mp4"
    with av.open(str(src)) as i, av.open(str(whole), "w", options={"movflags": "faststart"}) as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams if s.type in ("audio", "video")}
        for packet in i.demux(*[s for s in i.streams if s.index in streams]):
            if packet.dts is None:
                continue
            packet.stream = streams[packet.stream.index]
            o.mux(packet)
    data = whole.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat"), "moov must be at the front"
    with av.open(str(whole)) as c:
        ends = sorted(p.pos + p.size for p in c.demux() if p.pos is not None and p.size)
    cut = min(ends, key=lambda e: abs(e - keep * len(data)))
    dst.write_bytes(data[:cut])
    return dst


@pytest.fixture()
def truncated(assets_dir, tmp_path) -> Path:
    inp = tmp_path / "in"
    inp.mkdir()
    return _truncated_copy(assets_dir / "speech_positive.mp4", inp / "cut.mp4")


def test_truncated_file_records_decoded_against_declared_duration(truncated, assets_dir, tmp_path, capfd):
    res = extract(truncated.parent, out_dir=tmp_path / "out", config=CHEAP, cache_dir=tmp_path / "c",
                  progress=False)
    assert not res.failures
    item = res.items[0]
    meta = item.load().meta
    assert meta["decoded_duration"] < meta["declared_duration"] - 1.0
    assert "audio track decoded to" in item.incomplete and "truncated" in item.incomplete
    entry = json.loads((tmp_path / "out" / "manifest.json").read_text())["files"][0]
    assert entry["decoded_duration"] == meta["decoded_duration"] and entry["incomplete"] == item.incomplete
    # a whole file is not flagged
    whole = extract(assets_dir / "speech_positive.mp4", config=CHEAP, cache_dir=tmp_path / "c", progress=False)
    assert whole.items[0].incomplete is None
    assert abs(whole.items[0].decoded_duration - whole.items[0].duration) < 0.5
    # the summary warns; --require complete fails the file (from the cache, too)
    argv = ["extract", str(truncated.parent), "--cache-dir", str(tmp_path / "c"), "--text", "none",
            "--asr", "none", "--vision", "none", "-q"]
    assert main([*argv, "-o", str(tmp_path / "o2")]) == 0
    out = " ".join(capfd.readouterr().out.split())
    assert "warning: cut: audio track decoded to" in out
    assert main([*argv, "-o", str(tmp_path / "o3"), "--require", "complete"]) == 1
    capfd.readouterr()
    failures = json.loads((tmp_path / "o3" / "manifest.json").read_text())["failures"]
    assert [(f["stage"], "complete is required" in f["message"]) for f in failures] == [("decode", True)]


def test_truncated_video_stream_is_flagged_from_its_frames(truncated, tmp_path):
    """The visual extractor's last frame tells where the video stream stopped (no audio decoded here)."""
    from msa_toolkit.extractors.base import list_extractors

    if "mediapipe_face" not in list_extractors("vision"):
        pytest.skip("mediapipe_face not installed")
    res = extract(truncated, config=ExtractConfig(asr=None, text=None, audio=None), cache_dir=tmp_path / "c",
                  progress=False)
    item = res.items[0]
    assert item.incomplete.startswith("video stream decoded to") and item.decoded_duration < item.duration - 1.0
