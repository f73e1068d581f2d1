"""What a request to /slack/events must pass before Bolt reads a byte of it.

Bolt parses the body before it checks the signature, so unsigned garbage used to reach its
JSON and form parsers (500s, tracebacks) and an unsigned body of any size was read into
memory. Here the size is checked first (from Content-Length, then while reading), then the
signature over the raw bytes; only a signed body within the cap is handed on to Bolt.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from bot.payloads import EnvelopeError, check_envelope

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# slack_sdk/signature/__init__.py (SignatureVerifier.is_valid): a timestamp more than five
# minutes from now is refused, and the signature is "v0=" + HMAC-SHA256 of
# "v0:{timestamp}:{body}" under the signing secret, in hex.
MAX_AGE_SECONDS = 60 * 5
_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # seconds since 1970; 12 digits reach the year 33658
_REFUSED_BODY = {"error": "invalid request"}  # what Bolt's RequestVerification answers


class Refusal(Exception):
    """A request turned away: its status, a reason for the log (ours, never the client's
    text) and the JSON answer."""

    def __init__(self, status: int, reason: str, answer: dict[str, str]) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.answer = answer


def slack_gate(
    bolt: WsgiApp,
    *,
    signing_secret: str,
    max_body_bytes: int,
    clock: Callable[[], float] = time.time,
) -> WsgiApp:
    """`bolt`, behind the size cap and the signature check."""
    if not signing_secret:
        raise ValueError("the Slack gate needs SLACK_SIGNING_SECRET")  # or all would pass

    def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                raise Refusal(405, "not a POST", {"error": "Slack sends POST requests only"})
            body = read_body(environ, max_body_bytes)
            verify_signature(environ, body, signing_secret, clock())
            # Bolt reads the body as text (Slack only sends UTF-8), then parses and indexes
            # it before any listener runs: what it could not read stops here.
            check_envelope(body.decode("utf-8"), environ.get("CONTENT_TYPE"))
        except UnicodeDecodeError:
            return _refuse(environ, start_response, Refusal(400, "body is not UTF-8", _NOT_UTF8))
        except EnvelopeError as error:
            refusal = Refusal(400, str(error), _UNREADABLE)
            return _refuse(environ, start_response, refusal)
        except Refusal as refusal:
            return _refuse(environ, start_response, refusal)
        environ["wsgi.input"] = io.BytesIO(body)  # read once above; Bolt reads it again
        environ["CONTENT_LENGTH"] = str(len(body))
        return bolt(environ, start_response)

    return application


_NOT_UTF8 = {"error": "the request body is not UTF-8"}
_UNREADABLE = {"error": "the request body could not be read"}


def read_body(environ: dict[str, Any], max_bytes: int) -> bytes:
    """The body, never reading more than `max_bytes` + 1 bytes of it; Refusal(413) past that."""
    too_large = Refusal(
        413,
        f"body over {max_bytes} bytes",
        {"error": f"request bodies are limited to {max_bytes} bytes"},
    )
    stream = environ.get("wsgi.input")
    declared = str(environ.get("CONTENT_LENGTH") or "")
    if declared:
        if not (declared.isascii() and declared.isdigit()):
            raise Refusal(400, "malformed Content-Length", {"error": "bad Content-Length"})
        if len(declared) > 18 or int(declared) > max_bytes:  # 18 digits: no giant int parse
            raise too_large
        length = int(declared)
        return stream.read(length) if stream is not None and length else b""
    # PEP 3333: without Content-Length the body is empty, unless the server says the
    # stream ends by itself (chunked bodies; waitress sets wsgi.input_terminated).
    if stream is None or not environ.get("wsgi.input_terminated"):
        return b""
    data = bytes(stream.read(max_bytes + 1))
    if len(data) > max_bytes:
        raise too_large
    return data


def verify_signature(environ: dict[str, Any], body: bytes, secret: str, now: float) -> None:
    """Refusal(401) unless the body is signed with `secret` within MAX_AGE_SECONDS of now."""
    # WSGI headers arrive as latin-1 strings; whatever bytes a client sent, these encode.
    timestamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""))
    signature = str(environ.get("HTTP_X_SLACK_SIGNATURE", "")).encode("latin-1", "replace")
    if not timestamp or not signature:
        raise _unsigned("no signature headers")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise _unsigned("malformed timestamp")
    if abs(now - int(timestamp)) > MAX_AGE_SECONDS:
        raise _unsigned("timestamp more than 5 minutes away")
    digest = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    if not hmac.compare_digest(b"v0=" + digest.hexdigest().encode(), signature):
        raise _unsigned("bad signature")


def _unsigned(reason: str) -> Refusal:
    return Refusal(401, reason, _REFUSED_BODY)


def _refuse(
    environ: dict[str, Any], start_response: StartResponse, refusal: Refusal
) -> list[bytes]:
    log.warning(
        "refused %s %s from %s: %s",
        str(environ.get("REQUEST_METHOD", "?"))[:10],
        str(environ.get("PATH_INFO", ""))[:80],
        environ.get("REMOTE_ADDR", "?"),
        refusal.reason,
    )
    data = json.dumps(refusal.answer).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    if refusal.status == 405:
        headers.append(("Allow", "POST"))
    if refusal.status == 413:
        headers.append(("Connection", "close"))  # the rest of the body is never read
    start_response(f"{refusal.status} {HTTPStatus(refusal.status).phrase}", headers)
    return [data]
