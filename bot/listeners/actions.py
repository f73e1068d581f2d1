"""Buttons on the status card and the App Home."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot import blocks
from bot.ids import OPEN_APP_ACTION, ActionId
from bot.service import ActionRefused, BotContext, cancel_job, retry_job
from storage.queries import JobLookupError


def register(app: App, ctx: BotContext) -> None:
    @app.action(ActionId.CANCEL_JOB.value)
    def handle_cancel_button(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        try:
            cancel_job(ctx, action["value"], by=body["user"]["id"])
        except (JobLookupError, ActionRefused) as error:
            _tell(client, body, f"{error}.")

    @app.action(ActionId.RETRY_JOB.value)
    def handle_retry_button(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        try:
            retry_job(ctx, action["value"], body["user"]["id"])
        except (JobLookupError, ActionRefused) as error:
            _tell(client, body, f"{error}.")

    # A link button still sends an action; it only needs an ack. Home tab buttons carry
    # a position suffix so their ids stay unique within the view.
    @app.action(OPEN_APP_ACTION)
    def handle_open_app_button(ack: Ack) -> None:
        ack()


def _tell(client: WebClient, body: dict[str, Any], text: str) -> None:
    channel = (body.get("channel") or {}).get("id") or body["user"]["id"]
    client.chat_postEphemeral(
        channel=channel, user=body["user"]["id"], **blocks.error_message(text).as_kwargs()
    )
