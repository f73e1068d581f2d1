"""The gate in front of Bolt, as any WSGI server would call it (no waitress limits to lean on)."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest

from bot.slack_gate import MAX_AGE_SECONDS, slack_gate
from tests.support.slack_payloads import SIGNING_SECRET, sign

CAP = 64 * 1024


class CountingInput(io.RawIOBase):
    """An endless request body that counts what the app reads of it."""

    def __init__(self) -> None:
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise AssertionError("the gate must never read a body without a limit")
        self.read_bytes += size
        return b"0" * size


class Bolt:
    """Stands in for Bolt's WSGI handler: records what reached it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.bodies.append(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def call(
    environ: dict[str, Any], bolt: Bolt | None = None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    app = slack_gate(bolt or Bolt(), signing_secret=SIGNING_SECRET, max_body_bytes=CAP)
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    body = b"".join(app({"REQUEST_METHOD": "POST", **environ}, start_response))
    return seen["status"], seen["headers"], json.loads(body) if body != b"ok" else {}


def signed_environ(body: bytes, **headers: str) -> dict[str, Any]:
    signed = sign(body) | headers
    return {
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": signed["X-Slack-Request-Timestamp"],
        "HTTP_X_SLACK_SIGNATURE": signed["X-Slack-Signature"],
    }


def test_a_declared_length_over_the_cap_is_refused_without_reading() -> None:
    body = CountingInput()
    status, headers, answer = call({"CONTENT_LENGTH": str(200 * 1024 * 1024), "wsgi.input": body})
    assert status == 413 and headers["Connection"] == "close"
    assert "limited to 65536 bytes" in answer["error"]
    assert body.read_bytes == 0


def test_a_stream_without_length_is_cut_at_the_cap() -> None:
    body = CountingInput()
    status, _, _ = call({"wsgi.input": body, "wsgi.input_terminated": True})
    assert status == 413
    assert body.read_bytes == CAP + 1


@pytest.mark.parametrize("length", ["-1", "12abc", "\u0661\u0662", "9" * 5000])
def test_malformed_content_length_is_refused(length: str) -> None:
    status, _, _ = call({"CONTENT_LENGTH": length, "wsgi.input": CountingInput()})
    assert status in (400, 413)


def test_only_a_signed_body_reaches_bolt_and_arrives_whole() -> None:
    bolt = Bolt()
    body = b"command=%2Ftrain&text=help"
    assert call(signed_environ(body), bolt)[0] == 200
    assert bolt.bodies == [body]
    for bad in (
        {"HTTP_X_SLACK_SIGNATURE": "v0=" + "0" * 64},
        {"HTTP_X_SLACK_REQUEST_TIMESTAMP": str(int(time.time()) - MAX_AGE_SECONDS - 5)},
        {"HTTP_X_SLACK_REQUEST_TIMESTAMP": "abc"},
        {"HTTP_X_SLACK_SIGNATURE": "v0=\u00e9"},
    ):
        status, _, answer = call(signed_environ(body) | bad, bolt)
        assert (status, answer) == (401, {"error": "invalid request"})
    assert bolt.bodies == [body]


def test_a_signed_body_that_is_not_utf8_is_a_400() -> None:
    status, _, answer = call(signed_environ(b"payload=\xff"))
    assert status == 400 and "UTF-8" in answer["error"]


def test_other_methods_are_a_405() -> None:
    status, headers, _ = call({"REQUEST_METHOD": "GET"})
    assert status == 405 and headers["Allow"] == "POST"


def test_an_empty_signing_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="SLACK_SIGNING_SECRET"):
        slack_gate(Bolt(), signing_secret="", max_body_bytes=CAP)
