"""The one way TrainBot makes a Slack Web API client."""

from __future__ import annotations

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.settings import SlackSettings

# A 429 waits for Retry-After and tries again; a message is never dropped for a rate limit.
RATE_LIMIT_RETRIES = 10


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
