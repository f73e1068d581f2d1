"""Events API: the App Home tab lists the person's recent jobs."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot import blocks
from bot.service import BotContext, recent_snapshots

HOME_JOBS = 20


def register(app: App, ctx: BotContext) -> None:
    @app.event("app_home_opened")
    def handle_app_home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        user = event["user"]
        view = blocks.home_view(recent_snapshots(ctx, user_id=user, limit=HOME_JOBS))
        client.views_publish(user_id=user, view=view)
