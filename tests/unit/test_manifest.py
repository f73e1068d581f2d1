"""The Slack app manifests point Slack at the routes and scopes the bot really uses, in each mode.

Rules from Slack's manifest reference (docs.slack.dev/reference/app-manifest) and its Socket
Mode guides: a Socket Mode app has `socket_mode_enabled: true` and its features carry no request
URLs (docs.slack.dev/tools/java-slack-sdk/guides/socket-mode); an HTTP app names one https
request URL per surface; chat:write.public needs chat:write (docs.slack.dev/reference/scopes/
chat.write.public).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli import EXIT_USAGE, main
from bot.ids import TRAIN_COMMAND
from bot.manifest import EVENTS_PATH, app_manifest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_URL = "https://trainbot.example.com"


def shipped(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / name).read_text())
    return loaded


def urls_in(value: Any, key: str = "") -> list[tuple[str, str]]:
    """Every (key, value) in the manifest whose key names a URL Slack would call."""
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in urls_in(v, k)]
    if isinstance(value, list):
        return [found for item in value for found in urls_in(item, key)]
    return [(key, value)] if key in {"url", "request_url"} else []


def test_the_shipped_files_are_the_generated_manifests() -> None:
    assert shipped("manifest.yml") == app_manifest(socket=False, url=EXAMPLE_URL)
    assert shipped("manifest-socket.yml") == app_manifest(socket=True)


def test_http_manifest_wires_every_slack_surface_to_the_events_route() -> None:
    manifest = shipped("manifest.yml")
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is False
    commands = manifest["features"]["slash_commands"]
    assert [c["command"] for c in commands] == [TRAIN_COMMAND]
    urls = urls_in(manifest)
    assert sorted(key for key, _ in urls) == ["request_url", "request_url", "url"]
    assert {url for _, url in urls} == {EXAMPLE_URL + EVENTS_PATH}
    assert settings["interactivity"]["is_enabled"] is True
    assert "app_home_opened" in settings["event_subscriptions"]["bot_events"]
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True


def test_socket_manifest_enables_socket_mode_and_names_no_request_url() -> None:
    manifest = shipped("manifest-socket.yml")
    settings = manifest["settings"]
    assert settings["socket_mode_enabled"] is True
    assert urls_in(manifest) == []
    # The same surfaces, delivered over the websocket instead.
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == [TRAIN_COMMAND]
    assert settings["interactivity"] == {"is_enabled": True}
    events = ["app_home_opened", "app_uninstalled", "tokens_revoked"]
    assert settings["event_subscriptions"] == {"bot_events": events}
    http = shipped("manifest.yml")
    # Socket Mode serves one workspace: no OAuth redirect, the same scopes.
    assert manifest["oauth_config"] == {"scopes": http["oauth_config"]["scopes"]}
    assert http["oauth_config"]["redirect_urls"] == [EXAMPLE_URL + "/slack/oauth_redirect"]
    assert http["settings"]["event_subscriptions"]["bot_events"] == events
    assert manifest["features"]["app_home"] == http["features"]["app_home"]


@pytest.mark.parametrize("name", ["manifest.yml", "manifest-socket.yml"])
def test_manifests_ask_for_the_scopes_the_bot_calls_need(name: str) -> None:
    scopes = shipped(name)["oauth_config"]["scopes"]["bot"]
    assert len(scopes) == len(set(scopes))
    # commands; chat.postMessage/update; posting uninvited; conversations.join before a
    # file share; files.info + download; files_upload_v2; the DM fallback.
    assert {
        "commands",
        "chat:write",
        "chat:write.public",
        "channels:join",
        "files:read",
        "files:write",
        "im:write",
    } <= set(scopes)


def test_trainbot_manifest_prints_the_manifest_for_either_mode(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["manifest", "--socket"]) == 0
    assert json.loads(capsys.readouterr().out) == shipped("manifest-socket.yml")

    assert main(["manifest", "--url", "https://bot.example.org/"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert {url for _, url in urls_in(printed)} == {"https://bot.example.org/slack/events"}
    assert printed == app_manifest(socket=False, url="https://bot.example.org")
    assert main(["manifest", "--url", "https://bot.example.org/slack/events"]) == 0
    assert json.loads(capsys.readouterr().out) == printed


@pytest.mark.parametrize("url", ["http://bot.example.org", "bot.example.org", "https://"])
def test_trainbot_manifest_refuses_a_url_slack_would_not_call(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["manifest", "--url", url]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "https" in captured.err and "Traceback" not in captured.err
