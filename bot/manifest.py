"""The Slack app manifest, for HTTP (`trainbot serve`) or Socket Mode (`trainbot socket`).

One builder serves `trainbot manifest`, the shipped manifest files (a test keeps them equal)
and the tests' fake Slack, which is installed with exactly these scopes. The field names are
those of Slack's manifest reference (docs.slack.dev/reference/app-manifest). In Socket Mode
Slack delivers everything over the websocket, so the features are configured without request
URLs (docs.slack.dev/tools/java-slack-sdk/guides/socket-mode: "Configure the features (without
setting Request URLs)"), as in Slack's own bolt-python starter template.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from bot.ids import TRAIN_COMMAND

EVENTS_PATH = "/slack/events"  # where `trainbot serve` answers commands, events and actions
# Where Bolt's OAuth flow (bot/oauth.py) answers: the "Add to Slack" link, and the redirect URL
# to register under the app's OAuth settings (Bolt's defaults, slack_bolt/oauth/oauth_settings.py).
INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
APP_NAME = "TrainBot"  # the bot user's display name, as people invite it: /invite @TrainBot

# Each scope and the calls it is for.
BOT_SCOPES: dict[str, str] = {
    "commands": "/train",
    "chat:write": "status cards and thread replies",
    "chat:write.public": "post cards in public channels without being invited",
    "channels:join": "join a public channel to share the chart (file shares need membership)",
    "files:read": "download CSVs uploaded in the /train form",
    "files:write": "upload the chart into the job's thread",
    "im:write": "fall back to a DM when the channel is closed to the bot",
}
# app_uninstalled and tokens_revoked reach the app only if it subscribes to them
# (api.slack.com/events/app_uninstalled, /events/tokens_revoked): they remove an installation
# and stop that workspace's jobs (bot/listeners/events.py).
BOT_EVENTS = ("app_home_opened", "app_uninstalled", "tokens_revoked")


class ManifestError(ValueError):
    """The manifest cannot be built from what was given; the message says what to change."""


def app_manifest(*, socket: bool, url: str | None = None) -> dict[str, Any]:
    """The manifest for one mode: Socket Mode takes no URL, HTTP needs the public https URL."""
    events_url = None if socket else events_url_for(url)
    command: dict[str, Any] = {
        "command": TRAIN_COMMAND,
        "description": "Train a model, or check on one",
        "usage_hint": "[help | status ID | list | cancel ID | retry ID | logs ID]",
        "should_escape": False,
    }
    subscriptions: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    interactivity: dict[str, Any] = {"is_enabled": True}
    oauth_config: dict[str, Any] = {"scopes": {"bot": list(BOT_SCOPES)}}
    if events_url is not None:
        command["url"] = events_url
        subscriptions["request_url"] = events_url
        interactivity["request_url"] = events_url
        # Where Slack sends a workspace back after "Add to Slack" (OAuth mode, bot/oauth.py).
        oauth_config["redirect_urls"] = [events_url.removesuffix(EVENTS_PATH) + REDIRECT_PATH]
    return {
        "display_information": {
            "name": APP_NAME,
            "description": "Train a model on your data and get a live model app, from Slack.",
            "background_color": "#2c3e50",
        },
        "features": {
            # The Messages tab stays on (read-only): when the bot cannot post in a channel it
            # sends the card to the requester's DM, which lives in that tab.
            "app_home": {
                "home_tab_enabled": True,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": True,
            },
            "bot_user": {"display_name": APP_NAME, "always_online": True},
            "slash_commands": [command],
        },
        "oauth_config": oauth_config,
        "settings": {
            "event_subscriptions": subscriptions,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": socket,
            "token_rotation_enabled": False,
        },
    }


def events_url_for(url: str | None) -> str:
    """The request URL Slack calls: the bot's public https address plus /slack/events."""
    if not url:
        raise ManifestError(
            "give --url, the public https address where `trainbot serve` listens, "
            "or --socket for Socket Mode"
        )
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ManifestError(
            f"{url} is not an https address; Slack sends requests only to https URLs "
            "(use a tunnel while developing, or --socket)"
        )
    base = url.strip().rstrip("/")
    return base if base.endswith(EVENTS_PATH) else base + EVENTS_PATH
