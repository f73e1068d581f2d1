"""Code generation by a model on Groq, through the official `groq` SDK.

Each request asks for the reply schema: strict structured outputs on models that support
them, JSON mode on the others (pipeline/codegen/groq_models.py says which). Every prompt is
trimmed to the prompt-token budget and asks for at most the completion-token budget, so
that a request fits the key's per-minute token limit, which Groq checks before it runs one.

The SDK retries connection errors, 408/409/429 and 5xx itself (honouring Retry-After), so
an error that reaches us here is final for this call. Errors become CodegenUnavailable (the
runner falls back to the template) or InvalidCode (the runner may ask again).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import groq
from groq.types.chat import ChatCompletion, ChatCompletionMessageParam
from groq.types.chat.completion_create_params import ResponseFormat

from pipeline.codegen.base import CodeFailure, GeneratedCode, Resource, TaskSpec
from pipeline.codegen.checks import check_code
from pipeline.codegen.groq_models import (
    COMPLETION_TOKENS,
    DEFAULT_MODEL,
    PROMPT_TOKENS,
    suggestion,
    traits,
)
from pipeline.codegen.prompt import (
    CHARS_PER_TOKEN,
    REPLY_SCHEMA,
    Allowance,
    Message,
    PromptTooLarge,
    build_messages,
    build_repair_messages,
    clip,
    estimate_tokens,
    excerpt,
    fit,
    parse_answer,
)
from pipeline.errors import CodegenUnavailable, InvalidCode

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_MODEL", "GroqGenerator", "Usage"]

USAGE_KEPT = 100
TEMPERATURE = 0.2  # code, not prose: little variety, but not fully greedy so a retry can differ
CHECK_TIMEOUT = 5.0  # seconds for the model check at start: it must not hold the start up
# The share of the completion budget we expect a reasoning model to think with at low effort;
# the rest is what the model is told its answer may hold.
REASONING_SHARE = 0.3
JSON_VALIDATE_FAILED = "json_validate_failed"  # Groq's 400 when JSON mode output is not JSON
# Groq's codes for a model it does not serve: 404 model_not_found since the 2026-08-16
# retirements, 400 model_decommissioned before (tests/fakes/groq_api.py cites both).
MODEL_GONE = frozenset({"model_not_found", "model_decommissioned"})
# "... on tokens per minute (TPM): Limit 8000, Used 5034, Requested 1443. Please try again
# in 4.77s." and the 413's "... (TPM): Limit 8000, Requested 32979, please reduce ...".
LIMIT = re.compile(
    r"on tokens per (?P<unit>minute|day) \(\w+\): Limit (?P<limit>\d+)"
    r"(?:, Used (?P<used>\d+))?, Requested ~?(?P<requested>\d+)"
)
WAIT = re.compile(r"try again in (?P<wait>[0-9hms.]+)")


@dataclass(frozen=True)
class Usage:
    model: str
    prompt_tokens: int
    completion_tokens: int


class GroqGenerator:
    name = "groq"
    can_repair = True

    def __init__(
        self,
        *,
        api_key: str,
        model: str = DEFAULT_MODEL,
        base_url: str | None = None,
        timeout: float = 120.0,
        max_retries: int = 3,
        prompt_tokens: int = PROMPT_TOKENS,
        completion_tokens: int = COMPLETION_TOKENS,
        check_timeout: float = CHECK_TIMEOUT,
        client: groq.Groq | None = None,
    ) -> None:
        """`base_url` None lets the SDK read GROQ_BASE_URL (then https://api.groq.com)."""
        self.model = model
        self.timeout = timeout
        self.check_timeout = check_timeout
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.traits = traits(model)
        # Set once Groq has said it does not serve the model: every job then falls back at
        # once and says why, instead of spending a request on a known refusal.
        self.unavailable = ""
        # The latest answered calls, for cost reporting (bounded: the service runs for long).
        self.usage: deque[Usage] = deque(maxlen=USAGE_KEPT)
        self._client = client or groq.Groq(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )
        # Clear while a check started by `start_check` runs: a job waits for its verdict.
        self._checked = threading.Event()
        self._checked.set()

    # -- at start ----------------------------------------------------------------------------

    def start_check(self) -> threading.Thread:
        """Runs `check_at_start` in the background, so that no process waits on Groq to start
        (a CLI command that never asks Groq for code included); the first job waits for it."""
        self._checked.clear()
        thread = threading.Thread(target=self.check_at_start, name="groq-model-check", daemon=True)
        thread.start()
        return thread

    def wait_for_check(self) -> bool:
        """Waits (boundedly) for a check `start_check` began; True once none is running."""
        return self._checked.wait(self.check_timeout + 1.0)

    def check_at_start(self) -> None:
        """Checks the model against the models this key can use. Logs what it finds and
        never raises: a service whose check failed still starts and tries Groq per job."""
        try:
            self._check()
        finally:
            self._checked.set()

    def _check(self) -> None:
        try:
            client = self._client.with_options(timeout=self.check_timeout, max_retries=0)
            listing = client.models.list()
            offered = [model.id for model in listing.data]
        except Exception as error:  # noqa: BLE001 - any failure here only skips the check
            logger.warning(
                "Could not check GROQ_MODEL=%s against the models this Groq key can use "
                "(%s); going on without the check",
                self.model,
                clip(str(error) or type(error).__name__, 300),
            )
            return
        if self.model in offered:
            logger.info("Groq offers %s to this key", self.model)
            return
        self.unavailable = self._not_offered(offered)
        logger.warning("%s", self.unavailable)

    # -- the CodeGenerator protocol ----------------------------------------------------------

    def generate(self, spec: TaskSpec, resources: list[Resource]) -> GeneratedCode:
        return self._ask(lambda allowance: build_messages(spec, resources, allowance))

    def repair(
        self,
        spec: TaskSpec,
        resources: list[Resource],
        previous: GeneratedCode,
        failure: CodeFailure,
    ) -> GeneratedCode:
        return self._ask(
            lambda allowance: build_repair_messages(spec, resources, previous, failure, allowance)
        )

    # -- one request -------------------------------------------------------------------------

    @property
    def answer_chars(self) -> int:
        """How long the model is told its reply may be: the completion budget less the
        thinking a reasoning model does, in characters."""
        share = 1 - REASONING_SHARE if self.traits.reasoning_effort else 1.0
        return int(self.completion_tokens * share * CHARS_PER_TOKEN) // 1_000 * 1_000

    def _ask(self, build: Callable[[Allowance], list[Message]]) -> GeneratedCode:
        self.wait_for_check()
        if self.unavailable:
            raise CodegenUnavailable(self.unavailable)
        try:
            messages = fit(build, self.prompt_tokens, self.answer_chars)
        except PromptTooLarge as error:
            raise CodegenUnavailable(
                f"the task does not fit in one Groq request even trimmed (about {error.needed:,} "
                f"prompt tokens, TRAINBOT_GROQ_PROMPT_TOKENS is {error.budget:,}); raise it if "
                "this key's token limit allows"
            ) from error
        completion = self._complete(messages)
        content = self._content(completion)
        files, requirements, notes = parse_answer(content)
        check_code(files, requirements)
        return GeneratedCode(files, requirements, notes, provider=self.name)

    def _complete(self, messages: list[Message]) -> ChatCompletion:
        logger.debug("groq %s: about %d prompt tokens", self.model, estimate_tokens(messages))
        try:
            completion = self._client.chat.completions.create(
                model=self.model,
                messages=cast("list[ChatCompletionMessageParam]", messages),
                response_format=self._response_format(),
                temperature=TEMPERATURE,
                # Reasoning tokens count within it (console.groq.com/docs/reasoning).
                max_completion_tokens=self.completion_tokens,
                reasoning_effort=self.traits.reasoning_effort or groq.omit,
            )
        except groq.APIError as error:
            raise self._translate(error) from error
        if completion.usage is not None:
            usage = Usage(
                completion.model, completion.usage.prompt_tokens, completion.usage.completion_tokens
            )
            self.usage.append(usage)
            logger.info(
                "groq %s: %d prompt + %d completion tokens",
                usage.model,
                usage.prompt_tokens,
                usage.completion_tokens,
            )
        return completion

    def _response_format(self) -> ResponseFormat:
        if self.traits.strict_schema:
            return {
                "type": "json_schema",
                "json_schema": {"name": "trainbot_code", "strict": True, "schema": REPLY_SCHEMA},
            }
        return {"type": "json_object"}

    def _content(self, completion: ChatCompletion) -> str:
        if not completion.choices or not (completion.choices[0].message.content or "").strip():
            if completion.choices and completion.choices[0].finish_reason == "length":
                raise InvalidCode(
                    "Groq's model used up its answer budget before writing any code "
                    f"(TRAINBOT_GROQ_COMPLETION_TOKENS is {self.completion_tokens:,})"
                )
            raise InvalidCode("Groq's answer was empty")
        choice = completion.choices[0]
        content = choice.message.content or ""
        if choice.finish_reason == "length":
            raise InvalidCode(
                "Groq's answer was cut off at its length limit "
                f"({self.completion_tokens:,} tokens); the code must be shorter",
                detail=excerpt(content),
            )
        return content

    # -- errors ------------------------------------------------------------------------------

    def _translate(self, error: groq.APIError) -> CodegenUnavailable | InvalidCode:
        """An SDK error as a short message for the user; the SDK's text goes into `detail`."""
        detail = clip(str(error), 2_000)
        if isinstance(error, groq.AuthenticationError | groq.PermissionDeniedError):
            return CodegenUnavailable(
                "Groq refused the API key (check GROQ_API_KEY)", detail=detail
            )
        if isinstance(error, groq.APITimeoutError):
            return CodegenUnavailable(
                f"Groq could not be reached: no answer within {self.timeout:g} seconds",
                detail=detail,
            )
        if isinstance(error, groq.APIConnectionError):
            reason = clip(str(error.__cause__ or error.message), 200)
            return CodegenUnavailable(f"Groq could not be reached: {reason}", detail=detail)
        if isinstance(error, groq.InternalServerError):
            return CodegenUnavailable(
                f"Groq had a server error (HTTP {error.status_code}); try again later",
                detail=detail,
            )
        if not isinstance(error, groq.APIStatusError):
            return CodegenUnavailable("Groq's answer could not be read", detail=detail)
        body = _error_body(error.body)
        message = str(body.get("message") or error.message)
        limited = self._token_limit(error.status_code, body, message)
        if limited:
            return CodegenUnavailable(limited, detail=detail)
        if isinstance(error, groq.RateLimitError):
            return CodegenUnavailable("Groq's rate limit or quota was reached", detail=detail)
        if body.get("code") == JSON_VALIDATE_FAILED:
            return InvalidCode(
                "Groq's model did not produce valid JSON",
                detail=excerpt(str(body.get("failed_generation") or "")),
            )
        # Only Groq's own word that the model is gone latches it for the process: any other
        # 404 (a wrong GROQ_BASE_URL path) stays this request's failure.
        if body.get("code") in MODEL_GONE:
            self.unavailable = self._not_offered(())
            return CodegenUnavailable(self.unavailable, detail=detail)
        return CodegenUnavailable(
            f"Groq rejected the request (HTTP {error.status_code}): {clip(message, 200)}",
            detail=detail,
        )

    def _token_limit(self, status: int, body: dict[str, Any], message: str) -> str:
        """Plain words for Groq's token limits (a 413, or a 429 of type "tokens"), or ''."""
        found = LIMIT.search(message)
        if status not in (413, 429) or (found is None and body.get("type") != "tokens"):
            return ""
        limit = int(found["limit"]) if found else 0
        per = f"{limit:,} tokens per {found['unit']}" if found else "its tokens"
        if status == 413 or (found and int(found["requested"]) > limit):
            return (
                f"Groq refused the request as too large for this key's token limit ({per}): "
                f"lower TRAINBOT_GROQ_PROMPT_TOKENS and TRAINBOT_GROQ_COMPLETION_TOKENS (now "
                f"{self.prompt_tokens:,} + {self.completion_tokens:,}) to fit it, or use a key "
                "with a higher limit"
            )
        wait = WAIT.search(message)
        if found and found["unit"] == "day":
            when = f"; it frees up in {wait['wait']}" if wait else ""
            return f"this Groq key has used up its daily token limit ({per}){when}"
        return (
            f"this Groq key's token limit ({per}) was still reached after waiting for it; "
            "other work may be using the same key"
        )

    def _not_offered(self, offered: list[str] | tuple[str, ...]) -> str:
        choice = suggestion(offered, besides=self.model)
        return (
            f"Groq does not offer the model {self.model} to this API key (it was retired or "
            f"never existed): set GROQ_MODEL to a current model such as {choice}"
        )


def _error_body(body: object) -> dict[str, Any]:
    """The `error` object of an OpenAI-style error body, or {}."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}
