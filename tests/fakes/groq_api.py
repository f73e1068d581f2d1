"""A fake Groq API on 127.0.0.1 that the real `groq` SDK talks to unchanged.

    with FakeGroq() as fake:
        fake.script([error_reply(429, "slow down", retry_after=0), files_reply(files)])
        client = groq.Groq(api_key=fake.api_key, base_url=fake.base_url)
        ...
        assert len(fake.requests) == 2

The SDK posts to {base_url}/openai/v1/chat/completions and lists models with a GET of
{base_url}/openai/v1/models (groq/resources/chat/completions.py, groq/resources/models.py),
so `base_url` is what goes into GROQ_BASE_URL. Scripted replies are served in order, one per
chat request that passes the checks below (SDK retries included); a reply may be a callable
that builds one from the request body. When the script runs out the fake answers
`default_reply` (a 500 unless changed).

What the fake enforces, each rule with the page or report it comes from:
- 401 for a wrong key; 404 for other paths; 400 for a body without a model or messages.
- Models: only listed models answer. Any other id is a 404 `model_not_found`, which is what
  llama-3.3-70b-versatile has answered since Groq retired it on 2026-08-16.
- `response_format`: JSON mode needs the word "json" in the messages; `json_schema` with
  `strict: true` only on models that support strict mode, and only with a schema whose
  objects list every property as required and set `additionalProperties: false`.
- `reasoning_effort`: only on reasoning models, and only the values each one accepts.
- Tokens: each model has a tokens-per-minute limit (Groq's free tier by default). A request
  asking for more than the limit on its own (prompt + `max_completion_tokens`) is a 413; one
  that would pass the limit with the minute's earlier usage is a 429 with `retry-after`.
- What a model can answer: in JSON mode a reply that is not a JSON object becomes Groq's 400
  `json_validate_failed`; a reply longer than `max_completion_tokens` is cut off there with
  finish_reason "length". A scripted reply that breaks a strict schema is a mistake in the
  test (constrained decoding cannot produce it), answered with a 500 that says so.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.loopback import LoopbackService

COMPLETIONS_PATH = "/openai/v1/chat/completions"
MODELS_PATH = "/openai/v1/models"
ORGANIZATION = "org_01fakeorganization"
# Sent with every answer; Groq's x-ratelimit-* headers (console.groq.com/docs/rate-limits).
RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "1000",
    "x-ratelimit-limit-tokens": "8000",
    "x-ratelimit-remaining-requests": "999",
    "x-ratelimit-remaining-tokens": "7000",
    "x-ratelimit-reset-requests": "86.4s",
    "x-ratelimit-reset-tokens": "5s",
}
# Groq's free-tier per-minute token limit of the gpt-oss models and of qwen/qwen3.6-27b
# (console.groq.com/docs/rate-limits: openai/gpt-oss-120b 30 RPM, 1K RPD, 8K TPM, 200K TPD;
# github.com/sohzm/cheating-daddy/pull/468 for qwen/qwen3.6-27b).
FREE_TIER_TPM = 8_000
FREE_TIER_TPD = 200_000
# The fake's token count: one token per four characters of message text, rounded up, plus
# four per message for the chat template's role markers. That is the usual rule of thumb
# for English (real tokenizers need more tokens for code and JSON); deterministic, so tests
# know what the fake will count. TrainBot's own estimate must err above it.
CHARS_PER_TOKEN = 4
TOKENS_PER_MESSAGE = 4


@dataclass(frozen=True)
class FakeModel:
    """One model as Groq lists and serves it."""

    id: str
    owned_by: str
    strict_schema: bool = False  # structured outputs with strict: true
    reasoning_efforts: tuple[str, ...] = ()  # () = not a reasoning model
    context_window: int = 131_072
    created: int = 1_754_408_224


# Production models after the 2026-08-16 retirements (Groq's notice, quoted in
# github.com/karthink/gptel/issues/1478: "recommended replacement model, GPT OSS 120B /
# Qwen3.6 27B"). Strict mode on the gpt-oss models only (console.groq.com/docs/
# structured-outputs, "Supported models"). reasoning_effort: gpt-oss takes low, medium or
# high (the SDK's docstring in groq/resources/chat/completions.py); qwen3 models take none or
# default (same docstring; Groq's 400 quoted in github.com/Alishahryar1/free-claude-code/
# issues/1348 for qwen/qwen3.6-27b).
GPT_OSS_120B = FakeModel("openai/gpt-oss-120b", "OpenAI", True, ("low", "medium", "high"))
GPT_OSS_20B = FakeModel("openai/gpt-oss-20b", "OpenAI", True, ("low", "medium", "high"))
QWEN3_6_27B = FakeModel("qwen/qwen3.6-27b", "Alibaba Cloud", False, ("none", "default"))
CURRENT_MODELS = (GPT_OSS_120B, GPT_OSS_20B, QWEN3_6_27B)


@dataclass(frozen=True)
class FakeReply:
    """One answer. `content` set: a 200 chat.completion whose message says it; else `body`."""

    status: int = 200
    content: str | None = None
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    finish_reason: str = "stop"
    delay: float = 0.0  # seconds before answering (to trip the client's timeout)
    reasoning_tokens: int = 0  # a reasoning model's thinking, counted as completion tokens


Scripted = FakeReply | Callable[[dict[str, Any]], FakeReply]


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def prompt_tokens(body: dict[str, Any]) -> int:
    """The fake's count of a request's prompt (see CHARS_PER_TOKEN)."""
    messages = body.get("messages") or []
    return sum(estimate_tokens(str(m.get("content", ""))) + TOKENS_PER_MESSAGE for m in messages)


def requested_tokens(body: dict[str, Any]) -> int:
    """What Groq counts against the limit before it runs a request: the prompt plus the
    answer budget (github.com/zeeyado/koassistant.koplugin/issues/106, "Groq ... count that
    budget against the plan's tokens-per-minute allowance before running the request"; the
    same in github.com/maplibre/maplibre-agent-skills/pull/63). Without a budget the fake
    counts the prompt only: what Groq reserves then is not documented."""
    budget = body.get("max_completion_tokens") or body.get("max_tokens") or 0
    return prompt_tokens(body) + int(budget)


def raw_reply(content: str, *, finish_reason: str = "stop", reasoning_tokens: int = 0) -> FakeReply:
    """The model's message exactly as given, JSON or not."""
    return FakeReply(
        content=content, finish_reason=finish_reason, reasoning_tokens=reasoning_tokens
    )


def json_reply(answer: Any, *, reasoning_tokens: int = 0) -> FakeReply:
    """A message that is this value as JSON (for answers of the wrong shape)."""
    return raw_reply(json.dumps(answer), reasoning_tokens=reasoning_tokens)


def files_reply(
    files: dict[str, str],
    requirements: list[str] | None = None,
    notes: str = "",
    *,
    reasoning_tokens: int = 0,
) -> FakeReply:
    """The answer TrainBot asks for, in the shape of its reply schema."""
    answer = {
        "files": [{"name": name, "content": source} for name, source in files.items()],
        "requirements": requirements or [],
        "notes": notes,
    }
    return json_reply(answer, reasoning_tokens=reasoning_tokens)


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
    """Groq's 400 when a model in JSON mode wrote something that is not a JSON object;
    Groq validates before it answers (github.com/build-with-groq/g1/pull/23, a Groq
    maintainer: "The JSON validation step happens before the data from Groq is returned";
    the body as quoted in github.com/thepersonalaicompany/amurex-backend/issues/38)."""
    return error_reply(
        400,
        "Failed to generate JSON. Please adjust your prompt. "
        "See 'failed_generation' for more details.",
        "json_validate_failed",
        failed_generation=failed_generation,
    )


def model_not_found(model: str) -> FakeReply:
    """Groq's 404 for a model that does not exist or was retired: the body quoted in
    github.com/ITSpecialist111/ai_automation_suggester/issues/187 for llama-3.3-70b-versatile
    after 2026-08-16 (and in github.com/lobehub/lobehub/issues/3367 for an unknown id)."""
    return error_reply(
        404,
        f"The model `{model}` does not exist or you do not have access to it.",
        "model_not_found",
    )


def model_decommissioned(model: str) -> FakeReply:
    """Groq's older answer to a retired model, a 400 (github.com/valentinfrlch/ha-llmvision/
    issues/324, github.com/rashadphz/farfalle/issues/107); served for ids in `decommissioned`."""
    return error_reply(
        400,
        f"The model `{model}` has been decommissioned and is no longer supported. Please refer "
        "to https://console.groq.com/docs/deprecations for a recommendation on which model to "
        "use instead.",
        "model_decommissioned",
    )


def request_too_large(model: str, limit: int, requested: int, unit: str = "minute") -> FakeReply:
    """Groq's 413 when one request asks for more tokens than the limit allows at all
    (github.com/continuedev/continue/issues/10218, github.com/HunorLaczko/ha-groq-cloud-api/
    issues/27: type "tokens", code "rate_limit_exceeded")."""
    return error_reply(
        413,
        f"Request too large for model `{model}` in organization `{ORGANIZATION}` service tier "
        f"`on_demand` on tokens per {unit} ({_LIMIT_NAMES[unit]}): Limit {limit}, Requested "
        f"{requested}, please reduce your message size and try again. Need more tokens? "
        "Upgrade to Dev Tier today at https://console.groq.com/settings/billing",
        "rate_limit_exceeded",
        error_type="tokens",
    )


def tokens_rate_limited(
    model: str, limit: int, used: int, requested: int, wait: float, unit: str = "minute"
) -> FakeReply:
    """Groq's 429 when a request would pass the limit with what was already used
    (github.com/elizaOS/eliza/issues/4040 for tokens per minute, github.com/continuedev/
    continue/issues/10920 for tokens per day), with `retry-after` in seconds
    (github.com/Pythagora-io/gpt-pilot/issues/862 quotes Groq's header table)."""
    return error_reply(
        429,
        f"Rate limit reached for model `{model}` in organization `{ORGANIZATION}` service tier "
        f"`on_demand` on tokens per {unit} ({_LIMIT_NAMES[unit]}): Limit {limit}, Used {used}, "
        f"Requested {requested}. Please try again in {_duration(wait)}. Need more tokens? "
        "Upgrade to Dev Tier today at https://console.groq.com/settings/billing",
        "rate_limit_exceeded",
        retry_after=round(wait, 3),
        error_type="tokens",
    )


_LIMIT_NAMES = {"minute": "TPM", "day": "TPD"}


def _duration(seconds: float) -> str:
    """Groq writes waits as Go durations: 4.77s, 1m0.363s, 9m38.016s, 22h59m59.99s."""
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{int(hours)}h{int(minutes)}m{text}"
    return f"{int(minutes)}m{text}" if minutes else text


@dataclass(frozen=True)
class GroqRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: dict[str, Any]  # {} when the body was not a JSON object
    status: int  # what the fake answered
    prompt_tokens: int = 0  # the fake's count (chat requests)
    requested_tokens: int = 0  # prompt + answer budget, as checked against the limit


class FakeGroq(LoopbackService):
    def __init__(
        self,
        *,
        api_key: str = "gsk_test_key",
        default_reply: FakeReply | None = None,
        models: Iterable[FakeModel] = CURRENT_MODELS,
        decommissioned: Iterable[str] = (),
        tokens_per_minute: int = FREE_TIER_TPM,
        tokens_per_day: int = FREE_TIER_TPD,
        minute: float = 60.0,
        models_reply: FakeReply | None = None,
    ):
        """`minute` is the length of the per-minute window in seconds, shorter in tests that
        wait for it to pass; `models_reply` replaces the model list (an error or a delay)."""
        self.api_key = api_key
        self.default_reply = default_reply or error_reply(
            500, "no scripted reply", "no_scripted_reply", error_type="internal_server_error"
        )
        self.models = {model.id: model for model in models}
        self.decommissioned = set(decommissioned)
        self.tokens_per_minute = tokens_per_minute
        self.tokens_per_day = tokens_per_day
        self.minute = minute
        self.models_reply = models_reply
        self.requests: list[GroqRequest] = []
        self._script: deque[Scripted] = deque()
        self._usage: dict[str, list[tuple[float, int]]] = {}  # model -> (when, tokens)
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

    def use_tokens(self, model: str, tokens: int, *, ago: float = 0.0) -> None:
        """Tokens this key spent `ago` seconds before now elsewhere (another process using
        the same key): within the minute they count per minute and per day, later per day."""
        with self._lock:
            self._usage.setdefault(model, []).append((time.monotonic() - ago, tokens))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def completions(self) -> list[GroqRequest]:
        """Requests that reached the chat-completions endpoint with the right key."""
        return [r for r in self.requests if r.path == COMPLETIONS_PATH and r.status != 401]

    def model_listings(self) -> list[GroqRequest]:
        return [r for r in self.requests if r.path.split("?", 1)[0] == MODELS_PATH]

    def last_messages(self) -> list[dict[str, Any]]:
        return list(self.completions()[-1].body.get("messages", []))

    def user_prompts(self, request: int = -1) -> list[str]:
        """The user messages' text of one chat request (the last by default)."""
        messages = self.completions()[request].body.get("messages", [])
        return [m.get("content", "") for m in messages if m.get("role") == "user"]

    # -- serving -----------------------------------------------------------------------------

    def _handle(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[FakeReply, bytes]:
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        request = body if isinstance(body, dict) else {}
        reply, data = self._answer(method, path, headers, body)
        counted = path == COMPLETIONS_PATH and bool(request.get("messages"))
        with self._lock:
            self.requests.append(
                GroqRequest(
                    method,
                    path,
                    headers,
                    request,
                    reply.status,
                    prompt_tokens(request) if counted else 0,
                    requested_tokens(request) if counted else 0,
                )
            )
        if reply.delay:
            self._stopping.wait(reply.delay)
        return reply, data

    def _answer(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[FakeReply, bytes]:
        route = (method, path.split("?", 1)[0])
        if route not in {("POST", COMPLETIONS_PATH), ("GET", MODELS_PATH)}:
            return _plain(error_reply(404, f"Unknown request URL: {method} {path}.", "unknown_url"))
        if headers.get("authorization") != f"Bearer {self.api_key}":
            return _plain(error_reply(401, "Invalid API Key", "invalid_api_key"))
        if route[1] == MODELS_PATH:
            return self._list_models()
        problem = _invalid_request(body)
        if problem:
            return _plain(error_reply(400, problem))
        model_id = body["model"]
        if model_id in self.decommissioned:
            return _plain(model_decommissioned(model_id))
        model = self.models.get(model_id)
        if model is None:
            return _plain(model_not_found(model_id))
        problem = _unsupported_options(model, body)
        if problem:
            return _plain(error_reply(400, problem))
        refused = self._admit(model_id, requested_tokens(body))
        if refused:
            return _plain(refused)
        with self._lock:
            scripted = self._script.popleft() if self._script else self.default_reply
        reply = scripted(body) if callable(scripted) else scripted
        if reply.content is None:
            return _plain(reply)
        return self._complete(model_id, body, reply)

    def _list_models(self) -> tuple[FakeReply, bytes]:
        if self.models_reply is not None:
            return self.models_reply, json.dumps(self.models_reply.body or {}).encode("utf-8")
        data = [
            {
                "id": model.id,
                "object": "model",
                "created": model.created,
                "owned_by": model.owned_by,
                "active": True,
                "context_window": model.context_window,
                "public_apps": None,
            }
            for model in self.models.values()
        ]
        return FakeReply(), json.dumps({"object": "list", "data": data}).encode("utf-8")

    def _admit(self, model: str, requested: int) -> FakeReply | None:
        """The per-model token limits, per minute and per day (console.groq.com/docs/
        rate-limits: "Rate limits apply at the organization level", per model)."""
        now = time.monotonic()
        with self._lock:
            usage = self._usage.setdefault(model, [])
            for unit, limit, window in (
                ("minute", self.tokens_per_minute, self.minute),
                ("day", self.tokens_per_day, self.minute * 60 * 24),
            ):
                if requested > limit:
                    return request_too_large(model, limit, requested, unit)
                recent = [(when, tokens) for when, tokens in usage if now - when < window]
                used = sum(tokens for _, tokens in recent)
                if used + requested > limit:
                    wait = _wait_for(recent, used + requested - limit, window, now)
                    return tokens_rate_limited(model, limit, used, requested, wait, unit)
        return None

    def _complete(
        self, model: str, request: dict[str, Any], reply: FakeReply
    ) -> tuple[FakeReply, bytes]:
        content, finish_reason = reply.content or "", reply.finish_reason
        budget = request.get("max_completion_tokens") or request.get("max_tokens")
        if budget and reply.reasoning_tokens + estimate_tokens(content) > budget:
            # The model stops at its budget, thinking first (console.groq.com/docs/reasoning:
            # reasoning tokens are part of the output).
            room = max(0, int(budget) - reply.reasoning_tokens) * CHARS_PER_TOKEN
            content, finish_reason = content[:room], "length"
        if finish_reason != "length":
            problem = _breaks_format(request.get("response_format") or {}, content)
            if problem == "json":
                return _plain(json_validate_failed(content))
            if problem:
                return _plain(
                    error_reply(
                        500,
                        f"fake Groq: the scripted reply breaks the strict schema ({problem}); "
                        "constrained decoding cannot produce it, so the test is wrong",
                        error_type="internal_server_error",
                    )
                )
        prompt = prompt_tokens(request)
        completion = estimate_tokens(content) + reply.reasoning_tokens
        with self._lock:
            self._usage.setdefault(model, []).append((time.monotonic(), prompt + completion))
        usage: dict[str, Any] = {
            "queue_time": 0.01,
            "prompt_tokens": prompt,
            "prompt_time": 0.02,
            "completion_tokens": completion,
            "completion_time": 0.5,
            "total_tokens": prompt + completion,
            "total_time": 0.52,
        }
        if reply.reasoning_tokens:
            usage["completion_tokens_details"] = {"reasoning_tokens": reply.reasoning_tokens}
        completion_body = {
            "id": f"chatcmpl-fake{next(self._ids):06d}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                }
            ],
            "usage": usage,
            "system_fingerprint": "fp_fake",
            "x_groq": {"id": f"req_fake{next(self._ids):06d}"},
        }
        return reply, json.dumps(completion_body).encode("utf-8")


def _plain(reply: FakeReply) -> tuple[FakeReply, bytes]:
    return reply, json.dumps(reply.body or {}).encode("utf-8")


def _wait_for(recent: list[tuple[float, int]], excess: int, window: float, now: float) -> float:
    """Seconds until enough of the window's usage has aged out."""
    freed = 0
    for when, tokens in sorted(recent):
        freed += tokens
        if freed >= excess:
            return max(0.001, window - (now - when))
    return window


def _invalid_request(body: Any) -> str:
    """Why Groq would answer 400 to this body's shape, or ''."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' : property 'model' is missing"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' : minimum number of items is 1"
    return ""


def _unsupported_options(model: FakeModel, body: dict[str, Any]) -> str:
    """Why Groq would answer 400 to these options on this model, or ''."""
    effort = body.get("reasoning_effort")
    if effort is not None:
        if not model.reasoning_efforts:
            # Groq refuses reasoning_effort on its non-reasoning models
            # (github.com/diegosouzapw/OmniRoute/issues/3258); the wording is ours.
            return "`reasoning_effort` is not supported with this model"
        if effort not in model.reasoning_efforts:
            # github.com/iamsrikanthnani/pluely/pull/219 quotes this 400 for qwen3.
            return "`reasoning_effort` must be one of " + " or ".join(
                f"`{value}`" for value in model.reasoning_efforts
            )
    response_format = body.get("response_format") or {}
    kind = response_format.get("type", "text")
    if kind == "json_object":
        # groq/types/chat/completion_create_params.py: "the model will not generate JSON
        # without a system or user message instructing it to do so"; Groq checks for it.
        if "json" not in json.dumps(body["messages"]).lower():
            return "'messages' must contain the word 'json' in some form to use 'response_format'"
    elif kind == "json_schema":
        schema_format = response_format.get("json_schema") or {}
        if not schema_format.get("name"):
            # Required in groq/types/chat/completion_create_params.py.
            return "'response_format.json_schema.name' : property 'name' is missing"
        if schema_format.get("strict"):
            if not model.strict_schema:
                # console.groq.com/docs/structured-outputs: strict mode is "Currently only
                # available on select models"; other models answer 400.
                return (
                    f"model `{model.id}` does not support strict mode for response format "
                    "`json_schema`; see https://console.groq.com/docs/structured-outputs"
                )
            problem = _not_strict_ready(schema_format.get("schema") or {}, "schema")
            if problem:
                return f"invalid JSON schema for strict mode: {problem}"
    elif kind != "text":
        return f"'response_format.type' : value is not one of the allowed values, got {kind!r}"
    return ""


def _not_strict_ready(schema: dict[str, Any], where: str) -> str:
    """Strict mode: "All fields must be `required` and objects must set
    `additionalProperties: false`" (console.groq.com/docs/structured-outputs)."""
    if schema.get("type") == "object":
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return f"{where} must set additionalProperties: false"
        if set(schema.get("required") or []) != set(properties):
            return f"{where} must list every property under required"
        for name, child in properties.items():
            problem = _not_strict_ready(child, f"{where}.{name}")
            if problem:
                return problem
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return _not_strict_ready(schema["items"], f"{where}[]")
    return ""


def _breaks_format(response_format: dict[str, Any], content: str) -> str:
    """'json' when JSON mode would reject the content; a schema problem in strict mode; ''."""
    kind = response_format.get("type")
    if kind not in {"json_object", "json_schema"}:
        return ""
    try:
        value = json.loads(content)
    except ValueError:
        return "json"
    if not isinstance(value, dict):
        return "json"
    schema_format = response_format.get("json_schema") or {}
    if kind == "json_schema" and schema_format.get("strict"):
        return _mismatch(value, schema_format.get("schema") or {}, "answer")
    return ""


_JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


def _mismatch(value: Any, schema: dict[str, Any], where: str) -> str:
    """Where `value` breaks `schema` (the subset strict mode uses), or ''."""
    expected = schema.get("type")
    if expected and not isinstance(value, _JSON_TYPES.get(expected, object)):
        return f"{where} is not of type {expected}"
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        missing = [name for name in schema.get("required") or [] if name not in value]
        if missing:
            return f"{where} lacks {', '.join(missing)}"
        extra = [name for name in value if name not in properties]
        if extra and schema.get("additionalProperties") is False:
            return f"{where} has unexpected {', '.join(extra)}"
        for name, child in properties.items():
            if name in value:
                problem = _mismatch(value[name], child, f"{where}.{name}")
                if problem:
                    return problem
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problem = _mismatch(item, schema["items"], f"{where}[{index}]")
            if problem:
                return problem
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
