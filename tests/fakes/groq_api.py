"""A fake Groq chat-completions API on 127.0.0.1 that the real `groq` SDK talks to unchanged.

    with FakeGroq() as fake:
        fake.script([error_reply(429, "slow down", retry_after=0), files_reply(files)])
        client = groq.Groq(api_key=fake.api_key, base_url=fake.base_url)
        ...
        assert len(fake.requests) == 2

The SDK posts to {base_url}/openai/v1/chat/completions, so `base_url` is what goes into
GROQ_BASE_URL. Scripted replies are served in order, one per request (SDK retries included);
a reply may be a callable that builds one from the request body. When the script runs out
the fake answers `default_reply` (a 500 unless changed). Like Groq, it answers 401 to a
wrong key, 404 to other paths and 400 to a body without a model or messages, or asking for
JSON mode without the word "json" in the messages.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.loopback import LoopbackService

COMPLETIONS_PATH = "/openai/v1/chat/completions"
RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "1000",
    "x-ratelimit-limit-tokens": "12000",
    "x-ratelimit-remaining-requests": "999",
    "x-ratelimit-remaining-tokens": "11000",
    "x-ratelimit-reset-requests": "86.4s",
    "x-ratelimit-reset-tokens": "5s",
}


@dataclass(frozen=True)
class FakeReply:
    """One answer. `content` set: a 200 chat.completion whose message says it; else `body`."""

    status: int = 200
    content: str | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"
    delay: float = 0.0  # seconds before answering (to trip the client's timeout)


Scripted = FakeReply | Callable[[dict[str, Any]], FakeReply]


def raw_reply(content: str, *, finish_reason: str = "stop") -> FakeReply:
    """The model's message exactly as given, JSON or not."""
    return FakeReply(content=content, finish_reason=finish_reason)


def json_reply(answer: Any) -> FakeReply:
    """A message that is this value as JSON (for answers of the wrong shape)."""
    return raw_reply(json.dumps(answer))


def files_reply(
    files: dict[str, str], requirements: list[str] | None = None, notes: str = ""
) -> FakeReply:
    """The answer TrainBot asks for: {"files": ..., "requirements": ..., "notes": ...}."""
    return json_reply({"files": files, "requirements": requirements or [], "notes": notes})


def error_reply(
    status: int,
    message: str,
    code: str | None = None,
    *,
    retry_after: float | None = None,
    retry_after_ms: float | None = None,
    error_type: str | None = None,
    **extra: Any,
) -> FakeReply:
    """An error shaped like Groq's: {"error": {"message", "type", "code", ...extra}}.
    Groq sends `retry-after` (seconds) with a 429; the SDK also honours `retry-after-ms`,
    which lets tests retry without waiting (it ignores a retry-after of 0 and backs off)."""
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = f"{retry_after:g}"
    if retry_after_ms is not None:
        headers["retry-after-ms"] = f"{retry_after_ms:g}"
    kind = error_type or ("tokens" if status == 429 else "invalid_request_error")
    error = {"message": message, "type": kind, "code": code, **extra}
    return FakeReply(status=status, body={"error": error}, headers=headers)


def json_validate_failed(failed_generation: str = "{") -> FakeReply:
    """Groq's 400 when a model in JSON mode wrote something that is not JSON."""
    return error_reply(
        400,
        "Failed to generate JSON. Please adjust your prompt. "
        "See 'failed_generation' for more details.",
        "json_validate_failed",
        failed_generation=failed_generation,
    )


@dataclass(frozen=True)
class GroqRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]  # {} when the body was not a JSON object
    status: int  # what the fake answered


class FakeGroq(LoopbackService):
    def __init__(self, *, api_key: str = "gsk_test_key", default_reply: FakeReply | None = None):
        self.api_key = api_key
        self.default_reply = default_reply or error_reply(
            500, "no scripted reply", "no_scripted_reply", error_type="internal_server_error"
        )
        self.requests: list[GroqRequest] = []
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        super().__init__(_Handler)

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()  # replies that wait (to trip timeouts) end now
        super().stop()

    # -- what tests set and read -------------------------------------------------------------

    def script(self, replies: Iterable[Scripted]) -> None:
        with self._lock:
            self._script.extend(replies)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def completions(self) -> list[GroqRequest]:
        """Requests that reached the chat-completions endpoint with the right key."""
        return [r for r in self.requests if r.path == COMPLETIONS_PATH and r.status != 401]

    def last_messages(self) -> list[dict[str, Any]]:
        return list(self.requests[-1].body.get("messages", []))

    def user_prompts(self, request: int = -1) -> list[str]:
        """The user messages' text of one request (the last by default)."""
        messages = self.requests[request].body.get("messages", [])
        return [m.get("content", "") for m in messages if m.get("role") == "user"]

    # -- serving -----------------------------------------------------------------------------

    def _handle(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[FakeReply, bytes]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        reply = self._answer(method, path, headers, body)
        request = body if isinstance(body, dict) else {}
        with self._lock:
            self.requests.append(GroqRequest(method, path, headers, request, reply.status))
        if reply.delay:
            self._stopping.wait(reply.delay)
        return reply, self._render(reply, request)

    def _answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> FakeReply:
        if path.split("?", 1)[0] != COMPLETIONS_PATH or method != "POST":
            return error_reply(404, f"Unknown request URL: {method} {path}.", "unknown_url")
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return error_reply(401, "Invalid API Key", "invalid_api_key")
        problem = _invalid_request(body)
        if problem:
            return error_reply(400, problem)
        with self._lock:
            scripted = self._script.popleft() if self._script else self.default_reply
        return scripted(body) if callable(scripted) else scripted

    def _render(self, reply: FakeReply, request: dict[str, Any]) -> bytes:
        if reply.content is None:
            return json.dumps(reply.body or {}).encode("utf-8")
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in request.get("messages", []))
        completion_tokens = len(reply.content) // 4 + 1
        completion = {
            "id": f"chatcmpl-fake{next(self._ids):06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "unknown"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.content},
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": {
                "queue_time": 0.01,
                "prompt_tokens": prompt_tokens // 4 + 1,
                "prompt_time": 0.02,
                "completion_tokens": completion_tokens,
                "completion_time": 0.5,
                "total_tokens": prompt_tokens // 4 + 1 + completion_tokens,
                "total_time": 0.52,
            },
            "system_fingerprint": "fp_fake",
            "x_groq": {"id": f"req_fake{next(self._ids):06d}"},
        }
        return json.dumps(completion).encode("utf-8")


def _invalid_request(body: Any) -> str:
    """Why Groq would answer 400 to this body, or ''."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' : property 'model' is missing"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' : minimum number of items is 1"
    wants_json = (body.get("response_format") or {}).get("type") == "json_object"
    if wants_json and "json" not in json.dumps(messages).lower():
        return "'messages' must contain the word 'json' in some form to use 'response_format'"
    return ""


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:  # noqa: N802 - the http.server naming
        self._respond()

    def do_POST(self) -> None:  # noqa: N802
        self._respond()

    def _respond(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake: FakeGroq = self.server.fake  # type: ignore[attr-defined]
        reply, data = fake._handle(self.command, self.path, headers, raw)
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**RATE_LIMIT_HEADERS, **reply.headers}.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and hung up, as the timeout tests intend

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep pytest output clean
