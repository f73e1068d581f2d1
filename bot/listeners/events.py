"""Events API: the App Home tab lists the person's recent jobs."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot import blocks
from bot.limits import HOME_JOBS
from bot.service import BotContext, recent_jobs


def register(app: App, ctx: BotContext) -> None:
    @app.event("app_home_opened")
    def handle_app_home_opened(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        user = event["user"]
        page = recent_jobs(ctx, user_id=user, limit=HOME_JOBS)
        view = blocks.home_view(page.snapshots, total=page.total)
        client.views_publish(user_id=user, view=view)
