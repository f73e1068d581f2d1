"""Which Slack mode the environment asks for, and what each mode still lacks."""

from __future__ import annotations

from bot.manifest import BOT_SCOPES
from bot.settings import SlackSettings


def test_a_bot_token_is_single_workspace_mode_as_before() -> None:
    slack = SlackSettings(SLACK_BOT_TOKEN="xoxb-1", SLACK_SIGNING_SECRET="s")
    assert not slack.oauth and slack.missing("http") == []
    # A client id beside a bot token changes nothing: the token's workspace is served.
    both = SlackSettings(SLACK_BOT_TOKEN="xoxb-1", SLACK_CLIENT_ID="1.2", SLACK_CLIENT_SECRET="c")
    assert not both.oauth and both.missing("http") == ["SLACK_SIGNING_SECRET"]


def test_a_client_id_and_secret_without_a_token_is_oauth_mode() -> None:
    slack = SlackSettings(SLACK_CLIENT_ID="1.2", SLACK_CLIENT_SECRET="c", SLACK_SIGNING_SECRET="s")
    assert slack.oauth and slack.missing("http") == []
    half = SlackSettings(SLACK_CLIENT_ID="1.2")
    assert not half.oauth
    assert half.missing("http") == ["SLACK_CLIENT_SECRET", "SLACK_SIGNING_SECRET"]


def test_nothing_set_asks_for_the_single_workspace_variables() -> None:
    assert SlackSettings().missing("http") == ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"]


def test_socket_mode_stays_single_workspace() -> None:
    oauth = SlackSettings(SLACK_CLIENT_ID="1.2", SLACK_CLIENT_SECRET="c", SLACK_APP_TOKEN="xapp")
    assert oauth.missing("socket") == ["SLACK_BOT_TOKEN"]


def test_scopes_are_the_manifest_unless_given() -> None:
    assert SlackSettings().scopes == list(BOT_SCOPES)
    given = SlackSettings(SLACK_SCOPES="commands, chat:write")
    assert given.scopes == ["commands", "chat:write"]
