"""Slack-side settings, read from the environment in the bootstrap (never at import time)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

SLACK_API_DEFAULT = "https://slack.com/api/"


class SlackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    bot_token: str = Field(default="", alias="SLACK_BOT_TOKEN")
    signing_secret: str = Field(default="", alias="SLACK_SIGNING_SECRET")
    app_token: str = Field(default="", alias="SLACK_APP_TOKEN")  # Socket Mode only
    api_url: str = Field(default=SLACK_API_DEFAULT, alias="SLACK_API_URL")
    api_token: str = Field(default="", alias="TRAINBOT_API_TOKEN")  # the status API's bearer
    port: int = Field(default=3000, alias="PORT")
    # The least time between two writes (messages, card edits) to one channel.
    channel_interval: float = Field(default=1.0, ge=0.0, alias="TRAINBOT_SLACK_CHANNEL_INTERVAL")
    # The largest request body `trainbot serve` reads. Slack's requests are small: slash
    # commands, button clicks and our own form (a few KB; each input holds at most 3,000
    # characters), events without file contents (files come from files.slack.com). 1 MB
    # leaves room for the worst case and keeps 8 threads' bodies far below the memory budget.
    max_request_kb: int = Field(default=1024, ge=16, alias="TRAINBOT_MAX_REQUEST_KB")

    @property
    def max_request_bytes(self) -> int:
        return self.max_request_kb * 1024

    @property
    def base_url(self) -> str:
        return self.api_url if self.api_url.endswith("/") else self.api_url + "/"

    def missing(self, mode: str) -> list[str]:
        """The variables `trainbot serve` ("http") or `trainbot socket` ("socket") lacks."""
        needed = {
            "http": (
                ("SLACK_BOT_TOKEN", self.bot_token),
                ("SLACK_SIGNING_SECRET", self.signing_secret),
            ),
            "socket": (("SLACK_BOT_TOKEN", self.bot_token), ("SLACK_APP_TOKEN", self.app_token)),
        }[mode]
        return [name for name, value in needed if not value]
