"""Events API: the App Home tab lists the person's recent jobs."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot import blocks
from bot.limits import HOME_JOBS
from bot.listeners.reading import request_of
from bot.payloads import HomeOpened
from bot.service import BotContext, snapshot


def register(app: App, ctx: BotContext) -> None:
    @app.event("app_home_opened")
    def handle_app_home_opened(context: dict[str, Any], client: WebClient) -> None:
        opened: HomeOpened = request_of(context)
        if opened.tab != "home":
            return
        page = ctx.jobs.list(requested_by=opened.user_id, limit=HOME_JOBS)
        view = blocks.home_view([snapshot(item) for item in page.items], total=page.total)
        client.views_publish(user_id=opened.user_id, view=view)
