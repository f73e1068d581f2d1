"""The Slack app manifest points Slack at the routes and scopes the bot really uses."""

from pathlib import Path

import yaml

from bot.ids import TRAIN_COMMAND

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"


def test_manifest_wires_every_slack_surface_to_the_events_route() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == [TRAIN_COMMAND]
    settings = manifest["settings"]
    urls = [
        commands[0]["url"],
        settings["interactivity"]["request_url"],
        settings["event_subscriptions"]["request_url"],
    ]
    assert all(url.endswith("/slack/events") for url in urls)
    assert settings["interactivity"]["is_enabled"] is True
    assert "app_home_opened" in settings["event_subscriptions"]["bot_events"]
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True


def test_manifest_asks_for_the_scopes_the_bot_calls_need() -> None:
    scopes = set(yaml.safe_load(MANIFEST.read_text())["oauth_config"]["scopes"]["bot"])
    # commands, chat.postMessage/update, files.info + download, files_upload_v2, DM fallback
    assert {"commands", "chat:write", "files:read", "files:write", "im:write"} <= scopes
