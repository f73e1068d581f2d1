"""The bot as it runs in production (Bolt app, WSGI server or Socket Mode, worker, notifier)
against FakeSlack, and what tests read from it."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slack_bolt.adapter.socket_mode import SocketModeHandler
from sqlalchemy.engine import Engine

from bot.runtime import BotRuntime, build_runtime
from bot.settings import SlackSettings
from bot.web import make_server
from pipeline.netguard import UrlGuard
from storage import queries
from storage.db import session_scope
from storage.models import TrainingJob
from storage.states import JobStatus
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_socket import FakeSocketMode
from tests.support.pipeline import SETTLED, make_settings
from tests.support.slack_payloads import SIGNING_SECRET, SlackSender, SocketSender

API_TOKEN = "status-api-secret"
# Host names a test may type into the modal, and the addresses they resolve to.
TEST_HOSTS = {
    "data.example.com": "93.184.216.34",
    "intranet.example.com": "10.1.2.3",
}


def fake_resolver(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
    address = TEST_HOSTS.get(host, host)
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return [(family, socket.SOCK_STREAM, 6, "", (address, port or 0))]


@dataclass
class RunningBot:
    runtime: BotRuntime
    slack: FakeSlack

    @property
    def engine(self) -> Engine:
        return self.runtime.ctx.services.engine

    def wait_idle(self, timeout: float = 30.0) -> None:
        assert self.runtime.ctx.notifier.wait_idle(timeout), "the notifier did not catch up"


@dataclass
class BotHarness(RunningBot):
    sender: SlackSender
    base_url: str


@dataclass
class SocketBotHarness(RunningBot):
    sender: SocketSender
    socket: FakeSocketMode
    handler: SocketModeHandler


def _runtime(
    engine: Engine,
    tmp_path: Path,
    fake: FakeSlack,
    *,
    channel_interval: float,
    settings_overrides: dict[str, Any] | None,
    parts: dict[str, Any],
    **slack_env: Any,
) -> BotRuntime:
    settings = make_settings(tmp_path, **(settings_overrides or {}))
    slack = SlackSettings(
        SLACK_BOT_TOKEN=fake.token,
        SLACK_API_URL=fake.api_url,
        TRAINBOT_API_TOKEN=API_TOKEN,
        TRAINBOT_SLACK_CHANNEL_INTERVAL=channel_interval,
        **slack_env,
    )
    parts.setdefault("guard", UrlGuard(resolver=fake_resolver))
    return build_runtime(settings, slack, engine=engine, **parts)


@contextmanager
def running_bot(
    engine: Engine,
    tmp_path: Path,
    fake: FakeSlack,
    *,
    channel_interval: float = 1.0,
    settings_overrides: dict[str, Any] | None = None,
    **parts: Any,
) -> Iterator[BotHarness]:
    runtime = _runtime(
        engine,
        tmp_path,
        fake,
        channel_interval=channel_interval,
        settings_overrides=settings_overrides,
        parts=parts,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
    )
    server = make_server(runtime, host="127.0.0.1", port=0)
    thread = threading.Thread(target=server.run, daemon=True)
    runtime.start()
    thread.start()
    base_url = f"http://127.0.0.1:{server.effective_port}"  # type: ignore[union-attr]
    try:
        yield BotHarness(runtime, fake, SlackSender(base_url), base_url)
    finally:
        server.close()
        runtime.stop()
        thread.join(5)


@contextmanager
def running_socket_bot(
    engine: Engine,
    tmp_path: Path,
    fake: FakeSlack,
    *,
    channel_interval: float = 1.0,
    settings_overrides: dict[str, Any] | None = None,
    **parts: Any,
) -> Iterator[SocketBotHarness]:
    """The bot as `trainbot socket` runs it: no signing secret, an app token, a websocket."""
    with FakeSocketMode() as socket:
        fake.socket_mode = socket.new_url
        runtime = _runtime(
            engine,
            tmp_path,
            fake,
            channel_interval=channel_interval,
            settings_overrides=settings_overrides,
            parts=parts,
            SLACK_APP_TOKEN=fake.app_token,
        )
        runtime.start()
        handler = SocketModeHandler(runtime.app, app_token=runtime.ctx.slack.app_token)
        try:
            handler.connect()
            socket.wait_connected()
            yield SocketBotHarness(runtime, fake, SocketSender(socket), socket, handler)
        finally:
            handler.close()
            runtime.stop()
            fake.socket_mode = None


# -- what tests read ------------------------------------------------------------------------------


def jobs(bot: RunningBot) -> list[TrainingJob]:
    with session_scope(bot.engine) as session:
        return queries.list_jobs(session, limit=100)


def wait_job(
    bot: RunningBot,
    statuses: frozenset[JobStatus] | set[JobStatus] = SETTLED,
    timeout: float = 120,
    index: int = 0,
) -> TrainingJob:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = jobs(bot)
        if len(found) > index and found[index].job_status in statuses:
            return found[index]
        time.sleep(0.1)
    raise AssertionError(
        f"no job reached {statuses}: {[(j.short_id, j.status) for j in jobs(bot)]}"
    )


def card_of(bot: RunningBot, job: TrainingJob) -> dict[str, Any]:
    with session_scope(bot.engine) as session:
        fresh = queries.get_job(session, job_id=job.id)
    assert fresh is not None and fresh.card_ts and fresh.card_channel_id
    message = bot.slack.message(fresh.card_channel_id, fresh.card_ts)
    assert message is not None
    return message


def buttons(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for block in message["blocks"] or []:
        for element in block.get("elements", []):
            if element.get("type") == "button":
                found[element["action_id"]] = element
    return found
