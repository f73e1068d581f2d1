"""The client for calls made with a trigger_id: the same workspace's, without waiting out 429s."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.web.slack_response import SlackResponse

from bot.listeners.commands import busy_text
from bot.settings import SlackSettings
from bot.slack_client import build_web_client, retry_after, without_waits


def answer(status: int, headers: dict[str, str], error: str) -> SlackApiError:
    response = SlackResponse(
        client=None,
        http_verb="POST",
        api_url="https://slack.com/api/views.open",
        req_args={},
        data={"ok": False, "error": error},
        headers=headers,
        status_code=status,
    )
    return SlackApiError("refused", response)


def test_the_copy_keeps_the_workspace_and_drops_only_the_rate_limit_waits() -> None:
    settings = SlackSettings(SLACK_BOT_TOKEN="xoxb-1", SLACK_API_URL="http://127.0.0.1:9/api/")
    client = build_web_client(settings)
    # Bolt's per-request client in OAuth mode names its workspace (slack_bolt/app/app.py).
    per_request = WebClient(
        token="xoxb-2",
        base_url=client.base_url,
        team_id="T0OTHER",
        retry_handlers=client.retry_handlers.copy(),
    )
    copy = without_waits(per_request)
    assert copy.token == "xoxb-2" and copy.base_url == client.base_url
    assert copy.default_params == {"team_id": "T0OTHER"}
    assert copy.timeout == per_request.timeout
    assert not any(isinstance(h, RateLimitErrorRetryHandler) for h in copy.retry_handlers)
    assert any(isinstance(h, ConnectionErrorRetryHandler) for h in copy.retry_handlers)
    # The client Bolt gave the listener still waits out 429s for everything else.
    assert any(isinstance(h, RateLimitErrorRetryHandler) for h in per_request.retry_handlers)
    assert len(copy.retry_handlers) == len(per_request.retry_handlers) - 1


def test_retry_after_reads_the_header_of_a_429_only() -> None:
    # slack_sdk keeps both spellings of the header on a 429 (web/base_client.py).
    assert retry_after(answer(429, {"Retry-After": "43", "retry-after": "43"}, "ratelimited")) == 43
    assert retry_after(answer(429, {"retry-after": "7"}, "ratelimited")) == 7
    assert retry_after(answer(429, {}, "ratelimited")) == 1  # slack_sdk waits ~1 s then too
    assert retry_after(answer(200, {}, "expired_trigger_id")) is None


def test_the_busy_text_says_when_to_try_again() -> None:
    assert busy_text(43).endswith("run `/train` again in 43 seconds.")
    assert busy_text(0).endswith("again in 1 second.")
