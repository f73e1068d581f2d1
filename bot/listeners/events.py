"""Events API: the App Home tab lists the person's recent jobs; an uninstall (or revoked
bot token) removes the workspace's installation and stops everything it was running."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot import blocks
from bot.limits import HOME_JOBS
from bot.listeners.reading import request_of
from bot.payloads import HomeOpened, Revoked
from bot.service import BotContext, snapshot, stop_workspace
from pipeline.service import JobService

log = logging.getLogger(__name__)


def home_tab(jobs: JobService, user_id: str) -> dict[str, Any]:
    """The App Home view of a person's recent jobs: each job's row (status, model, metric,
    link) and none of its events, which the tab does not show."""
    page = jobs.list(requested_by=user_id, limit=HOME_JOBS, with_events=False)
    return blocks.home_view([snapshot(item) for item in page.items], total=page.total)


def register(app: App, ctx: BotContext) -> None:
    @app.event("app_home_opened")
    def handle_app_home_opened(context: dict[str, Any], client: WebClient) -> None:
        opened: HomeOpened = request_of(context)
        if opened.tab != "home":
            return
        view = home_tab(ctx.jobs_for(context), opened.user_id)
        client.views_publish(user_id=opened.user_id, view=view)

    store = app.installation_store
    if store is None:
        return  # one workspace (SLACK_BOT_TOKEN): its installation is not ours to forget

    # Bolt's own TokenRevocationListeners (slack_bolt/listener/builtins.py) do the store
    # part; ours also stops the workspace's jobs, which no one could see or cancel after.
    @app.event("app_uninstalled")
    @app.event("tokens_revoked")
    def handle_revoked(context: dict[str, Any]) -> None:
        revoked: Revoked = request_of(context)
        team_id, enterprise_id = context.get("team_id"), context.get("enterprise_id")
        for user_id in revoked.user_ids:
            store.delete_installation(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id)
        if not (revoked.everything or revoked.bot):
            return  # only people's own tokens went; the bot still works there
        if revoked.everything:
            store.delete_installation(enterprise_id=enterprise_id, team_id=team_id)
        store.delete_bot(enterprise_id=enterprise_id, team_id=team_id)
        stopped = stop_workspace(ctx, team_id=team_id, enterprise_id=enterprise_id)
        log.info(
            "workspace %s removed the app; %d of its jobs stopped",
            team_id or enterprise_id,
            len(stopped),
        )
