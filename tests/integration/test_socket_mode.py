"""`trainbot socket`: the same listeners over Socket Mode, against a fake websocket endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.ids import ActionId
from bot.manifest import BOT_SCOPES
from storage.db import make_engine, upgrade
from storage.states import JobStatus
from tests.fakes.slack_api import FakeSlack
from tests.support.slack_bot import (
    SocketBotHarness,
    buttons,
    card_of,
    jobs,
    running_socket_bot,
    wait_job,
)
from tests.support.slack_payloads import train_form, view_submission

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bot(tmp_path: Path) -> Iterator[SocketBotHarness]:
    engine = make_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    upgrade(engine)
    # Installed from the Socket Mode manifest: its scopes, and no more.
    with (
        FakeSlack(scopes=BOT_SCOPES) as fake,
        running_socket_bot(engine, tmp_path, fake) as harness,
    ):
        yield harness
    engine.dispose()


def open_modal(bot: SocketBotHarness) -> dict[str, Any]:
    assert bot.sender.command("").payload is None
    opened = bot.slack.wait_for(lambda: [v for v in bot.slack.views if v["method"] == "views.open"])
    return opened[-1]["view"]


def test_the_app_token_opens_the_connection(bot: SocketBotHarness) -> None:
    (call,) = bot.slack.calls_to("apps.connections.open")
    assert call.headers["authorization"] == f"Bearer {bot.slack.app_token}"


def test_help_is_answered_in_the_ack(bot: SocketBotHarness) -> None:
    ack = bot.sender.command("help")
    assert ack.seconds < 1.0, ack.seconds
    assert ack.payload is not None
    assert ack.payload.get("response_type", "ephemeral") == "ephemeral"
    help_text = ack.payload["text"] + json.dumps(ack.payload.get("blocks", []))
    for sub in ("status", "list", "cancel", "retry", "logs"):
        assert f"/train {sub}" in help_text
    assert bot.socket.unexpected == []


def test_train_from_modal_to_live_button(bot: SocketBotHarness) -> None:
    view = open_modal(bot)
    assert view["callback_id"] == "train_modal"
    assert json.loads(view["private_metadata"])["channel_id"] == "C1"

    ack = bot.sender.interaction(
        view_submission(view, train_form(name="Socket iris", dataset="iris"))
    )
    assert ack.payload is None, "an empty ack closes the modal"
    assert len(jobs(bot)) == 1
    job = wait_job(bot)
    assert job.status == JobStatus.LIVE, job.error
    assert (job.origin, job.channel_id, job.requested_by) == ("slack", "C1", "U1")
    bot.wait_idle()
    card = card_of(bot, job)
    live_button = buttons(card)[ActionId.OPEN_APP.value]
    assert live_button["url"] == job.deployment_url
    assert "Open live app" in live_button["text"]["text"]
    charts = [u for u in bot.slack.uploads if (u["channel"], u["thread_ts"]) == ("C1", card["ts"])]
    assert charts and charts[0]["content"].startswith(b"\x89PNG")

    assert (
        bot.sender.event({"type": "app_home_opened", "user": "U1", "tab": "home"}).payload is None
    )
    home = bot.slack.wait_for(lambda: bot.slack.home_views.get("U1"))
    assert "Socket iris" in json.dumps(home)
    assert bot.slack.rejections == []
    assert bot.socket.unexpected == []


def test_invalid_submission_gets_field_errors_in_the_ack(bot: SocketBotHarness) -> None:
    view = open_modal(bot)
    ack = bot.sender.interaction(view_submission(view, train_form(dataset="iris")))
    assert ack.payload is not None
    assert ack.payload["response_action"] == "errors"
    assert "name" in ack.payload["errors"]["name"].lower(), ack.payload
    assert jobs(bot) == []


def test_connections_open_takes_only_the_app_token_as_bearer() -> None:
    with FakeSlack(socket_mode=lambda: "ws://127.0.0.1:1/link/?ticket=t") as fake:
        client = WebClient(base_url=fake.api_url)
        assert client.apps_connections_open(app_token=fake.app_token)["url"].startswith("ws://")
        refused = {
            "not_allowed_token_type": lambda: client.apps_connections_open(app_token=fake.token),
            "invalid_auth": lambda: client.apps_connections_open(app_token="xapp-nope"),
            # Slack refuses the app token as a form field on this method.
            "not_authed": lambda: client.api_call(
                "apps.connections.open", data={"token": fake.app_token}
            ),
        }
        for error, call in refused.items():
            with pytest.raises(SlackApiError) as raised:
                call()
            assert raised.value.response["error"] == error


def test_socket_without_an_app_token_exits_with_usage(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "TRAINBOT_")) and k != "DATABASE_URL"
    }
    env |= {"PYTHONPATH": str(REPO), "SLACK_BOT_TOKEN": "xoxb-test-token"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "socket"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Set SLACK_APP_TOKEN first" in done.stderr
    assert "SLACK_BOT_TOKEN" not in done.stderr
