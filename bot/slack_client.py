"""The one way TrainBot makes a Slack Web API client."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.settings import SlackSettings

# A 429 waits for Retry-After and tries again; a message is never dropped for a rate limit.
RATE_LIMIT_RETRIES = 10
# What a 429 without a readable Retry-After asks us to wait (slack_sdk's handler waits about
# a second then: slack_sdk/http_retry/builtin_handlers.py, RateLimitErrorRetryHandler).
DEFAULT_RETRY_AFTER = 1


def build_web_client(settings: SlackSettings, *, token: str | None = None) -> WebClient:
    """The bot token's client; `token`: an installed workspace's (bot/oauth.py). In OAuth
    mode without `token` it has none: Bolt sets each request's from the installation."""
    return WebClient(
        token=token or settings.bot_token or None,
        base_url=settings.base_url,
        timeout=30,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=3),
            RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def without_waits(client: WebClient) -> WebClient:
    """`client` (Bolt's for this request: its token, its workspace) that answers a 429 with
    SlackApiError at once instead of sleeping out Retry-After.

    For calls made with a trigger_id: Slack's trigger expires 3 s after the person's action
    (api.slack.com/interactivity/handling#modal_responses), so a views.open retried after a
    Retry-After of seconds fails anyway, and meanwhile it holds one of Bolt's listener
    threads, which every other request needs to be acked. Copied as Bolt copies its client
    per request (slack_bolt/app/app.py, `client_per_request`)."""
    return WebClient(
        token=client.token,
        base_url=client.base_url,
        timeout=client.timeout,
        ssl=client.ssl,
        proxy=client.proxy,
        headers=dict(client.headers),  # WebClient sets its User-Agent in the dict it is given
        team_id=client.default_params.get("team_id"),
        logger=client.logger,
        retry_handlers=[
            handler
            for handler in client.retry_handlers or []
            if not isinstance(handler, RateLimitErrorRetryHandler)
        ],
    )


def retry_after(error: SlackApiError) -> int | None:
    """The seconds a rate-limited call (HTTP 429) was told to wait; None: not rate limited.
    (slack_sdk keeps a 429's headers as a dict of strings, under both spellings of the
    name: slack_sdk/web/base_client.py, _perform_urllib_http_request.)"""
    response = error.response
    if response.status_code != 429:
        return None
    for name, value in (response.headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return max(0, int(str(value).strip()))
            except ValueError:
                break
    return DEFAULT_RETRY_AFTER
