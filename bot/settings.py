"""Slack-side settings, read from the environment in the bootstrap (never at import time)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.manifest import BOT_SCOPES, INSTALL_PATH, REDIRECT_PATH

SLACK_API_DEFAULT = "https://slack.com/api/"
__all__ = ["INSTALL_PATH", "REDIRECT_PATH", "SlackSettings"]


class SlackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    bot_token: str = Field(default="", alias="SLACK_BOT_TOKEN")
    signing_secret: str = Field(default="", alias="SLACK_SIGNING_SECRET")
    app_token: str = Field(default="", alias="SLACK_APP_TOKEN")  # Socket Mode only
    api_url: str = Field(default=SLACK_API_DEFAULT, alias="SLACK_API_URL")
    # OAuth (many workspaces): set these and leave SLACK_BOT_TOKEN unset. Each workspace that
    # installs the app through INSTALL_PATH gets its own bot token, kept in the database.
    client_id: str = Field(default="", alias="SLACK_CLIENT_ID")
    client_secret: str = Field(default="", alias="SLACK_CLIENT_SECRET")
    # Comma-separated; empty: the manifest's bot scopes (bot/manifest.py, the one list).
    scopes_text: str = Field(default="", alias="SLACK_SCOPES")
    # The redirect URL registered with Slack, when it has more than one (then Slack requires
    # oauth.v2.access to name the one the install used); empty: Slack's single registered one.
    redirect_uri: str = Field(default="", alias="SLACK_REDIRECT_URI")
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

    @property
    def scopes(self) -> list[str]:
        given = [scope.strip() for scope in self.scopes_text.split(",") if scope.strip()]
        return given or list(BOT_SCOPES)

    @property
    def oauth(self) -> bool:
        """Many workspaces, installed through OAuth: a client id and secret, no bot token.
        With SLACK_BOT_TOKEN the bot serves that one workspace, as it always has."""
        return bool(self.client_id and self.client_secret and not self.bot_token)

    def missing(self, mode: str) -> list[str]:
        """The variables `trainbot serve` ("http") or `trainbot socket` ("socket") lacks.
        Socket Mode serves one workspace (its app token and bot token); only HTTP does OAuth."""
        signing = ("SLACK_SIGNING_SECRET", self.signing_secret)
        if mode == "socket":
            needed = [("SLACK_BOT_TOKEN", self.bot_token), ("SLACK_APP_TOKEN", self.app_token)]
        elif not self.bot_token and (self.client_id or self.client_secret):
            client = [
                ("SLACK_CLIENT_ID", self.client_id),
                ("SLACK_CLIENT_SECRET", self.client_secret),
            ]
            needed = [*client, signing]
        else:
            needed = [("SLACK_BOT_TOKEN", self.bot_token), signing]
        return [name for name, value in needed if not value]
