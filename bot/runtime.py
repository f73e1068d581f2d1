"""Builds the running bot from settings: engine, notifier, pipeline services, Bolt app."""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from sqlalchemy.engine import Engine

from bot.app import build_app
from bot.notifier import SlackNotifier
from bot.oauth import client_for
from bot.service import BotContext, extend_hours
from bot.settings import SlackSettings
from bot.slack_client import build_web_client
from bot.slack_files import SlackFileSource
from pipeline.bootstrap import bootstrap, build_engine
from pipeline.events import StoredOnly
from pipeline.settings import Settings
from storage.db import make_engine


@dataclass
class BotRuntime:
    ctx: BotContext
    app: App
    client: WebClient

    def start(self, *, worker: bool = True) -> None:
        self.ctx.notifier.start()
        if worker:
            self.ctx.services.worker.start()

    def stop(self) -> None:
        """A deploy's SIGTERM or Ctrl-C: the worker drains (running jobs get
        TRAINBOT_DRAIN_SECONDS, then go back to the queue), then the notifier sends what was
        stored last and releases its lease."""
        self.ctx.services.worker.drain()
        self.ctx.notifier.stop()


def settle_heap() -> None:
    """Once a long-running process has started: what it holds for good (modules, the app,
    engines) leaves the garbage collector's view. Each full collection otherwise walks it all,
    and with hundreds of jobs in the process a pass took 171 ms, which an ack waiting for the
    interpreter then pays (76 ms once frozen; bench/fleet.py's ack rows). Objects frozen here
    are still freed by reference counting; only cycles among them are never collected."""
    gc.collect()
    gc.freeze()


def slack_sources(slack: SlackSettings, engine: Engine, client: WebClient) -> dict[str, Any]:
    """Where jobs read files uploaded in Slack, with each workspace's token: the web process
    and `trainbot worker` alike (nothing, when Slack is not set up in this process)."""
    if not (slack.bot_token or slack.oauth):
        return {}
    files = SlackFileSource(client_for(slack, engine, client), api_url=slack.base_url)
    return {files.prefix: files}


def notifier_engine(engine: Engine) -> Engine:
    """The Slack notifier's own small pool on PostgreSQL: in a burst a worker's hundreds of job
    threads can hold every connection of the main one, and the buttons must not wait for them
    (bench/fleet.py saw a checkout wait 4 s). On SQLite writers take turns on the file
    whatever the pool: the one engine serves."""
    if engine.dialect.name != "postgresql":
        return engine
    url = engine.url.render_as_string(hide_password=False)
    return make_engine(url, pool_size=2, max_overflow=8)


def build_runtime(settings: Settings, slack: SlackSettings, **parts: Any) -> BotRuntime:
    """`parts` lets tests pass an engine, a code generator or a sandbox provider."""
    client = build_web_client(slack)
    engine = parts.pop("engine", None) or build_engine(settings)
    services = bootstrap(
        settings,
        sink=StoredOnly(),
        engine=engine,
        sources=slack_sources(slack, engine, client),
        **parts,
    )
    notifier = SlackNotifier(
        notifier_engine(engine),
        # Each job's workspace: OAuth installs from the database, else the one bot token.
        client_for(slack, engine, client),
        poll_seconds=settings.poll_seconds,
        listen=settings.listen,
        lease_seconds=settings.lease_seconds,
        channel_interval=slack.channel_interval,
        card_interval=slack.channel_interval,
        extend_hours=extend_hours(services.deps.sandboxes.max_lifetime),
        owns_engine=engine.dialect.name == "postgresql",
    )
    ctx = BotContext(services=services, slack=slack, notifier=notifier)
    return BotRuntime(ctx=ctx, app=build_app(ctx, client), client=client)
