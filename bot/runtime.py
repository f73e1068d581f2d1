"""Builds the running bot from settings: engine, notifier, pipeline services, Bolt app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.app import build_app
from bot.notifier import SlackNotifier
from bot.service import BotContext
from bot.settings import SlackSettings
from bot.slack_client import build_web_client
from bot.slack_files import SlackFileSource
from pipeline.bootstrap import bootstrap, build_engine
from pipeline.settings import Settings


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
        self.ctx.services.worker.shutdown()
        self.ctx.notifier.stop()


def build_runtime(settings: Settings, slack: SlackSettings, **parts: Any) -> BotRuntime:
    """`parts` lets tests pass an engine, a code generator or a sandbox provider."""
    client = build_web_client(slack)
    engine = parts.pop("engine", None) or build_engine(settings)
    notifier = SlackNotifier(
        client,
        engine,
        channel_interval=slack.channel_interval,
        card_interval=slack.channel_interval,
    )
    files = SlackFileSource(client, api_url=slack.base_url)
    services = bootstrap(
        settings, sink=notifier, engine=engine, sources={files.prefix: files}, **parts
    )
    ctx = BotContext(services=services, slack=slack, notifier=notifier)
    return BotRuntime(ctx=ctx, app=build_app(ctx, client), client=client)
