"""Code generation by a model on Groq, through the official `groq` SDK in JSON mode.

The SDK retries connection errors, 408/409/429 and 5xx itself (honouring Retry-After), so
an error that reaches us here is final for this call. Errors become CodegenUnavailable (the
runner falls back to the template) or InvalidCode (the runner may ask again).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, cast

import groq
from groq.types.chat import ChatCompletion, ChatCompletionMessageParam

from pipeline.codegen.base import CodeFailure, GeneratedCode, Resource, TaskSpec
from pipeline.codegen.checks import check_code
from pipeline.codegen.prompt import (
    Message,
    build_messages,
    build_repair_messages,
    clip,
    excerpt,
    parse_answer,
)
from pipeline.errors import CodegenUnavailable, InvalidCode

logger = logging.getLogger(__name__)

# Groq's production Llama 3.3 70B: supports JSON mode, 128k context, 32k output tokens, and
# writes sound Python; also on the free tier. Reasoning models (gpt-oss, qwen3) spend output
# tokens thinking, which free-tier per-minute token limits make costly for two whole files.
USAGE_KEPT = 100
DEFAULT_MODEL = "llama-3.3-70b-versatile"
TEMPERATURE = 0.2  # code, not prose: little variety, but not fully greedy so a retry can differ
JSON_VALIDATE_FAILED = "json_validate_failed"  # Groq's 400 when JSON mode output is not JSON


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
        client: groq.Groq | None = None,
    ) -> None:
        """`base_url` None lets the SDK read GROQ_BASE_URL (then https://api.groq.com)."""
        self.model = model
        self.timeout = timeout
        # The latest answered calls, for cost reporting (bounded: the service runs for long).
        self.usage: deque[Usage] = deque(maxlen=USAGE_KEPT)
        self._client = client or groq.Groq(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=max_retries
        )

    def generate(self, spec: TaskSpec, resources: list[Resource]) -> GeneratedCode:
        return self._ask(build_messages(spec, resources))

    def repair(
        self,
        spec: TaskSpec,
        resources: list[Resource],
        previous: GeneratedCode,
        failure: CodeFailure,
    ) -> GeneratedCode:
        return self._ask(build_repair_messages(spec, resources, previous, failure))

    def _ask(self, messages: list[Message]) -> GeneratedCode:
        completion = self._complete(messages)
        content = self._content(completion)
        files, requirements, notes = parse_answer(content)
        check_code(files, requirements)
        return GeneratedCode(files, requirements, notes, provider=self.name)

    def _complete(self, messages: list[Message]) -> ChatCompletion:
        try:
            completion = self._client.chat.completions.create(
                model=self.model,
                messages=cast("list[ChatCompletionMessageParam]", messages),
                response_format={"type": "json_object"},
                temperature=TEMPERATURE,
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

    def _content(self, completion: ChatCompletion) -> str:
        if not completion.choices or not (completion.choices[0].message.content or "").strip():
            raise InvalidCode("Groq's answer was empty")
        choice = completion.choices[0]
        content = choice.message.content or ""
        if choice.finish_reason == "length":
            raise InvalidCode(
                "Groq's answer was cut off before it ended; the code must be shorter",
                detail=excerpt(content),
            )
        return content

    def _translate(self, error: groq.APIError) -> CodegenUnavailable | InvalidCode:
        """An SDK error as a short message for the user; the SDK's text goes into `detail`."""
        detail = clip(str(error), 2_000)
        if isinstance(error, groq.AuthenticationError | groq.PermissionDeniedError):
            return CodegenUnavailable(
                "Groq refused the API key (check GROQ_API_KEY)", detail=detail
            )
        if isinstance(error, groq.RateLimitError):
            return CodegenUnavailable("Groq's rate limit or quota was reached", detail=detail)
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
        if isinstance(error, groq.APIStatusError):
            body = _error_body(error.body)
            if body.get("code") == JSON_VALIDATE_FAILED:
                return InvalidCode(
                    "Groq's model did not produce valid JSON",
                    detail=excerpt(str(body.get("failed_generation") or "")),
                )
            if isinstance(error, groq.NotFoundError):
                return CodegenUnavailable(
                    f"Groq does not offer the model {self.model!r}", detail=detail
                )
            message = clip(str(body.get("message") or error.message), 200)
            return CodegenUnavailable(
                f"Groq rejected the request (HTTP {error.status_code}): {message}", detail=detail
            )
        return CodegenUnavailable("Groq's answer could not be read", detail=detail)


def _error_body(body: object) -> dict[str, Any]:
    """The `error` object of an OpenAI-style error body, or {}."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}
