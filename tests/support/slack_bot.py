"""The bot as it runs in production (Bolt app, WSGI server, worker, notifier) against FakeSlack."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from waitress.server import create_server

from bot.runtime import BotRuntime, build_runtime
from bot.settings import SlackSettings
from bot.web import build_wsgi
from pipeline.netguard import UrlGuard
from tests.fakes.slack_api import FakeSlack
from tests.support.pipeline import make_settings
from tests.support.slack_payloads import SIGNING_SECRET, SlackSender

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
class BotHarness:
    runtime: BotRuntime
    slack: FakeSlack
    sender: SlackSender
    base_url: str

    @property
    def engine(self) -> Engine:
        return self.runtime.ctx.services.engine

    def wait_idle(self, timeout: float = 30.0) -> None:
        assert self.runtime.ctx.notifier.wait_idle(timeout), "the notifier did not catch up"


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
    settings = make_settings(tmp_path, **(settings_overrides or {}))
    slack = SlackSettings(
        SLACK_BOT_TOKEN=fake.token,
        SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=fake.api_url,
        TRAINBOT_API_TOKEN=API_TOKEN,
        TRAINBOT_SLACK_CHANNEL_INTERVAL=channel_interval,
    )
    parts.setdefault("guard", UrlGuard(resolver=fake_resolver))
    runtime = build_runtime(settings, slack, engine=engine, **parts)
    server = create_server(build_wsgi(runtime), host="127.0.0.1", port=0, threads=8)
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
