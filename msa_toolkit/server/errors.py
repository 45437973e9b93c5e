"""The one shape of every error the server answers: ``{"error": {"status", "code", "message"}}``."""

from __future__ import annotations

from typing import Mapping

#: error codes (the ``code`` of the JSON error), one per kind of bad request
BAD_REQUEST = "bad_request"          # 400: malformed body (no boundary, broken multipart, bad JSON)
MISSING_FILE = "missing_file"        # 400: no `file` part and no JSON text
EMPTY = "empty"                      # 400: the upload (or the text) holds nothing
UNAUTHORIZED = "unauthorized"        # 401: --token set and no/wrong bearer token
NOT_FOUND = "not_found"              # 404
METHOD_NOT_ALLOWED = "method_not_allowed"  # 405
TOO_LARGE = "too_large"              # 413: over --max-upload-mb (or the JSON/text limits)
UNSUPPORTED_TYPE = "unsupported_type"  # 415: a file type that is not video or audio, or a body type not accepted
NOT_MEDIA = "not_media"              # 415: the bytes do not open as video or audio
UNDECODABLE = "undecodable"          # 422: media that fails to decode (corrupt streams)
UNUSABLE = "unusable"                # 422: media the model cannot read (e.g. a video without sound for a text model)
INVALID = "invalid"                  # 422: a parameter of the wrong type (e.g. ?segments=maybe)
BUSY = "busy"                        # 503: the queue is full (Retry-After says when to try again)
INTERNAL = "internal"                # 500: a bug; the server keeps running


class ApiError(Exception):
    """An error answer: HTTP ``status``, a stable ``code``, a message for people, optional headers."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


#: HTTP status -> the code used when a framework error (routing, validation) carries no code of ours
STATUS_CODES = {400: BAD_REQUEST, 401: UNAUTHORIZED, 404: NOT_FOUND, 405: METHOD_NOT_ALLOWED, 413: TOO_LARGE,
                415: UNSUPPORTED_TYPE, 422: INVALID, 503: BUSY}
