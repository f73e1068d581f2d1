"""Buttons on the status card, the expiry notice and the App Home."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import blocks
from bot.ids import OPEN_APP_ACTION, ActionId
from bot.listeners.reading import request_of
from bot.payloads import BlockAction
from bot.service import BotContext
from pipeline.service import ServiceError

log = logging.getLogger(__name__)


def register(app: App, ctx: BotContext) -> None:
    @app.action(ActionId.CANCEL_JOB.value)
    def handle_cancel_button(ack: Ack, context: dict[str, Any], client: WebClient) -> None:
        ack()
        click: BlockAction = request_of(context)
        try:
            ctx.jobs_for(context).cancel(click.value or "", by=click.user_id)
        except ServiceError as error:
            _tell(client, click, f"{error}.")

    @app.action(ActionId.RETRY_JOB.value)
    def handle_retry_button(ack: Ack, context: dict[str, Any], client: WebClient) -> None:
        ack()
        click: BlockAction = request_of(context)
        try:
            ctx.jobs_for(context).retry(click.value or "", by=click.user_id, origin="slack")
        except ServiceError as error:
            _tell(client, click, f"{error}.")

    @app.action(ActionId.EXTEND_APP.value)
    def handle_extend_button(ack: Ack, context: dict[str, Any], client: WebClient) -> None:
        ack()
        click: BlockAction = request_of(context)
        try:
            extended = ctx.jobs_for(context).extend(click.value or "", hours=ctx.extend_hours)
        except ServiceError as error:
            _tell(client, click, f"{error}.")
            return
        job = extended.job
        cut_short = ctx.jobs.provider if extended.cut_short else ""
        reply = blocks.extended_reply(
            click.user_id, job.id, extended.expires_at, cut_short=cut_short
        )
        try:  # in the job's thread, where the notice was
            client.chat_postMessage(
                channel=job.card_channel_id or click.channel_id or click.user_id,
                thread_ts=job.card_ts,
                **reply.as_kwargs(),
            )
        except SlackApiError as error:
            log.warning("could not answer the Extend of job %s: %s", job.short_id, error)

    # A link button still sends an action; it only needs an ack. Home tab buttons carry
    # a position suffix so their ids stay unique within the view.
    @app.action(OPEN_APP_ACTION)
    def handle_open_app_button(ack: Ack) -> None:
        ack()


def _tell(client: WebClient, click: BlockAction, text: str) -> None:
    try:
        client.chat_postEphemeral(
            channel=click.channel_id or click.user_id,
            user=click.user_id,
            **blocks.error_message(text).as_kwargs(),
        )
    except SlackApiError as error:  # after the ack there is no one else to tell
        log.warning("could not tell %s: %s", click.user_id, error.response.get("error"))
