"""The bot in OAuth mode (many workspaces) against FakeSlack, and what tests do with it:
install a workspace the way a person's browser does, and send Slack's payloads from a
given workspace."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.engine import Engine

from bot.oauth import installation_store
from bot.runtime import build_runtime
from bot.settings import INSTALL_PATH, REDIRECT_PATH, SlackSettings
from bot.web import make_server
from pipeline.netguard import UrlGuard
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_oauth import Workspace
from tests.support.pipeline import make_settings
from tests.support.slack_bot import API_TOKEN, BotHarness, fake_resolver
from tests.support.slack_payloads import SIGNING_SECRET, SlackSender

REDIRECT_URL = f"https://trainbot.example{REDIRECT_PATH}"  # as registered with the fake app


def oauth_settings(fake: FakeSlack, **extra: Any) -> SlackSettings:
    return SlackSettings(
        SLACK_CLIENT_ID=fake.oauth.client_id,
        SLACK_CLIENT_SECRET=fake.oauth.client_secret,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_REDIRECT_URI=REDIRECT_URL,
        SLACK_API_URL=fake.api_url,
        TRAINBOT_API_TOKEN=API_TOKEN,
        TRAINBOT_SLACK_CHANNEL_INTERVAL=0.0,
        **extra,
    )


@contextmanager
def running_oauth_bot(
    engine: Engine, tmp_path: Path, fake: FakeSlack, *, worker: bool = False, **parts: Any
) -> Iterator[BotHarness]:
    """`worker` False: jobs stay queued, so tests act on them in a known state."""
    fake.oauth.redirect_urls = [REDIRECT_URL]
    slack = oauth_settings(fake)
    assert slack.oauth
    parts.setdefault("guard", UrlGuard(resolver=fake_resolver))
    runtime = build_runtime(make_settings(tmp_path), slack, engine=engine, **parts)
    server = make_server(runtime, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    runtime.start(worker=worker)
    thread.start()
    base_url = f"http://127.0.0.1:{server.effective_port}"  # type: ignore[union-attr]
    try:
        yield BotHarness(runtime, fake, SlackSender(base_url), base_url)
    finally:
        server.close()
        runtime.stop()
        thread.join(5)


@dataclass
class Installed:
    workspace: Workspace
    page: httpx.Response


def install(
    bot: BotHarness, *, team_id: str, user_id: str = "U0ADMIN", team_name: str | None = None
) -> Installed:
    """A person installs the app from /slack/install, as their browser would."""
    with httpx.Client(base_url=bot.base_url, timeout=10) as browser:
        start = browser.get(INSTALL_PATH)
        assert start.status_code == 302, start.text
        approved = bot.slack.oauth.approve(
            start.headers["location"], team_id=team_id, user_id=user_id, team_name=team_name
        )
        back = urlsplit(approved)
        assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT_URL
        # The browser keeps the state cookie /slack/install set (httpx does not send a
        # Secure cookie over http, so it is passed on by hand).
        cookie = start.headers["set-cookie"].split(";")[0]
        page = browser.get(f"{REDIRECT_PATH}?{back.query}", headers={"Cookie": cookie})
    return Installed(bot.slack.oauth.by_team[team_id], page)


def bot_token(bot: BotHarness, team_id: str) -> str | None:
    """The bot token the installation store holds for a workspace."""
    store = installation_store(bot.runtime.ctx.slack, bot.engine)
    found = store.find_bot(enterprise_id=None, team_id=team_id)
    return found.bot_token if found else None


# -- Slack's payloads from one workspace ----------------------------------------------------


def command(bot: BotHarness, text: str, *, team_id: str, user: str, channel: str) -> str:
    """`/train text` typed in `team_id`; the text of the (ephemeral) answer."""
    response = bot.sender.command(text, user=user, channel=channel, team_id=team_id)
    assert response.status_code == 200, response.text
    return str(response.json()["text"]) if response.content else ""  # an empty ack


def in_team(payload: dict[str, Any], team_id: str) -> dict[str, Any]:
    """A payload of tests.support.slack_payloads, as sent from another workspace."""
    text = json.dumps(payload).replace('"T0001"', json.dumps(team_id))
    moved: dict[str, Any] = json.loads(text)
    return moved


def event(bot: BotHarness, event: dict[str, Any], *, team_id: str) -> httpx.Response:
    """An Events API delivery from `team_id` (docs.slack.dev/apis/events-api: the outer
    event_callback carries team_id and the app's authorizations there)."""
    body = {
        "token": "legacy-unused",
        "team_id": team_id,
        "api_app_id": bot.slack.oauth.app_id,
        "type": "event_callback",
        "event_id": f"Ev{time.monotonic_ns()}",
        "event_time": int(time.time()),
        "event": event,
        "authorizations": [
            {"enterprise_id": None, "team_id": team_id, "user_id": "U0BOT", "is_bot": True}
        ],
    }
    return bot.sender.post(json.dumps(body).encode(), "application/json")
