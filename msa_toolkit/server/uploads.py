"""An uploaded clip, streamed from the request into a private folder and never trusted.

The multipart body is parsed as it arrives (python-multipart's streaming parser): the ``file``
part is written to ``<private folder>/upload<suffix>`` (created 0600, never overwriting), its size
counted with every chunk, and the request fails with 413 the moment it passes the limit (a
``Content-Length`` already over it is refused before a byte is read). The suffix comes from a
fixed list (the file name's extension when it is a media one, else the part's content type);
the client's file name itself is only cleaned for display (:func:`display_name`) and echoed
back as the prediction's ``path``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, AsyncIterator, BinaryIO

from .._io import MEDIA_EXTENSIONS
from .errors import BAD_REQUEST, EMPTY, MISSING_FILE, TOO_LARGE, UNSUPPORTED_TYPE, ApiError

#: the multipart field that carries the clip
FILE_FIELD = "file"
#: the stored upload's name without suffix (the client's name is never a path)
UPLOAD_STEM = "upload"
#: suffix of an upload whose type is only known to be video/audio (or not stated): decoding decides
UNKNOWN_SUFFIX = ".media"
#: slack over the file limit for the multipart framing when Content-Length is checked up front
MULTIPART_OVERHEAD = 64 * 1024
#: the most bytes kept of a form field other than ``file`` (they are read and ignored)
MAX_FIELD_BYTES = 4096
#: the most parts one request may have
MAX_PARTS = 8
#: the longest file name echoed back
MAX_NAME_CHARS = 200
#: part content types -> suffix, for uploads whose file name has no extension (webcam recordings)
MEDIA_TYPES = {
    "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov", "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi", "video/mpeg": ".mpg", "video/3gpp": ".3gp", "video/mp2t": ".ts", "video/ogg": ".ogg",
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/mpeg": ".mp3", "audio/mp3": ".mp3",
    "audio/flac": ".flac", "audio/x-flac": ".flac", "audio/ogg": ".ogg", "audio/webm": ".webm", "audio/mp4": ".m4a",
    "audio/x-m4a": ".m4a", "audio/aac": ".aac", "audio/opus": ".opus",
}
#: content types that say nothing about the file (curl's default, a missing header)
GENERIC_TYPES = ("", "application/octet-stream")


@dataclass(frozen=True)
class Upload:
    """A stored upload."""

    # the file in the private folder
    path: Path
    # the client's file name, cleaned, for display only
    name: str
    # bytes received
    size: int
    # the part's content type as sent
    content_type: str


def accepted_types() -> str:
    return ", ".join(sorted(MEDIA_EXTENSIONS))


def media_suffix(filename: str, content_type: str) -> str:
    """The stored upload's suffix, from a fixed list; ApiError 415 when the name or type says it is neither
    video nor audio. Whether the bytes really are media is decided when they are decoded."""
    ext = PurePosixPath(filename.replace("\\", "/")).suffix.lower() if filename else ""
    ctype = content_type.split(";")[0].strip().lower()
    if ext in MEDIA_EXTENSIONS:
        return ext
    if ext:
        raise ApiError(415, UNSUPPORTED_TYPE, f"files of type {ext!r} are not accepted: send video or audio "
                                              f"({accepted_types()})")
    if ctype in MEDIA_TYPES:
        return MEDIA_TYPES[ctype]
    if ctype.startswith(("video/", "audio/")) or ctype in GENERIC_TYPES:
        return UNKNOWN_SUFFIX
    raise ApiError(415, UNSUPPORTED_TYPE, f"content type {ctype!r} is not video or audio: send a video or audio "
                                          f"file ({accepted_types()})")


def display_name(filename: str) -> str:
    """The client's file name for display: its last path component, control characters removed, shortened."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(ch for ch in base if ch.isprintable()).strip()
    return clean[:MAX_NAME_CHARS] or UPLOAD_STEM


class _Receiver:
    """python-multipart callbacks: the ``file`` part to disk (size-limited), other parts read and dropped."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = folder, max_bytes
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, bytes] = {}
        self.parts = 0
        self.in_file = False
        self.field_bytes = 0
        self.out: BinaryIO | None = None
        self.upload: dict[str, Any] | None = None
        self.ended = False

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self.part_begin, "on_header_field": self.on_header_field,
                "on_header_value": self.on_header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                "on_part_end": self.part_end, "on_end": self.end}

    def part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise ApiError(400, BAD_REQUEST, f"too many form fields (at most {MAX_PARTS})")
        self.headers, self.in_file, self.field_bytes = {}, False, 0

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").strip().lower()] = bytes(self.header_value).strip()
        self.header_field.clear()
        self.header_value.clear()

    def headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(self.headers.get("content-disposition", b""))
        if params.get(b"name", b"").decode("latin-1") != FILE_FIELD:
            return
        if self.upload is not None:
            raise ApiError(400, BAD_REQUEST, f"more than one {FILE_FIELD!r} field: send one clip per request")
        raw_name = params.get(b"filename", b"")
        filename = raw_name.decode("utf-8", errors="replace")
        content_type = self.headers.get("content-type", b"").decode("latin-1")
        suffix = media_suffix(filename, content_type)
        path = self.folder / f"{UPLOAD_STEM}{suffix}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        self.out = os.fdopen(fd, "wb")
        self.in_file = True
        self.upload = {"path": path, "name": display_name(filename), "size": 0, "content_type": content_type}

    def part_data(self, data: bytes, start: int, end: int) -> None:
        n = end - start
        if not self.in_file:
            self.field_bytes += n
            if self.field_bytes > MAX_FIELD_BYTES:
                raise ApiError(400, BAD_REQUEST, f"a form field other than {FILE_FIELD!r} is over "
                                                 f"{MAX_FIELD_BYTES} bytes")
            return
        assert self.upload is not None and self.out is not None
        self.upload["size"] += n
        if self.upload["size"] > self.max_bytes:
            raise too_large(self.max_bytes)
        self.out.write(data[start:end])

    def part_end(self) -> None:
        if self.in_file and self.out is not None:
            self.out.close()
            self.out = None
        self.in_file = False

    def end(self) -> None:
        self.ended = True

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, TOO_LARGE, f"the upload is over the limit of {max_bytes / 2 ** 20:g} MiB "
                                    "(msa serve --max-upload-mb)")


def check_length(headers: Any, limit: int) -> None:
    """413 before reading when the declared body length is already over ``limit``; 400 when it is not a number."""
    length = headers.get("content-length")
    if length is None:
        return
    try:
        n = int(length)
    except ValueError:
        raise ApiError(400, BAD_REQUEST, f"Content-Length is not a number: {length[:40]!r}") from None
    if n > limit:
        raise too_large(limit - MULTIPART_OVERHEAD)


async def receive_upload(content_type: str, chunks: AsyncIterator[bytes], folder: Path, max_bytes: int) -> Upload:
    """Stream a ``multipart/form-data`` body into ``folder``; the stored ``file`` part as an :class:`Upload`.

    Raises ApiError: 400 (no boundary, malformed body, no or two ``file`` fields, an empty file),
    413 (over ``max_bytes``, checked per chunk), 415 (a file type that is not video or audio).
    A partly written file stays in ``folder``: the caller removes the folder.
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, BAD_REQUEST, "multipart/form-data without a boundary")
    rx = _Receiver(folder, max_bytes)
    try:
        parser = MultipartParser(boundary, rx.callbacks())
        async for chunk in chunks:
            if chunk:
                parser.write(chunk)
        parser.finalize()
    except (FormParserError, ValueError) as e:
        raise ApiError(400, BAD_REQUEST, f"malformed multipart body ({e})") from None
    finally:
        rx.close()
    if rx.upload is None:
        raise ApiError(400, MISSING_FILE, f"no {FILE_FIELD!r} field: upload the clip as multipart/form-data "
                                          f"field {FILE_FIELD!r}, or send JSON {{\"text\": ...}}")
    if not rx.ended:
        raise ApiError(400, BAD_REQUEST, "the multipart body ended early (upload interrupted?)")
    if rx.upload["size"] == 0:
        raise ApiError(400, EMPTY, "the uploaded file is empty (0 bytes)")
    return Upload(**rx.upload)
