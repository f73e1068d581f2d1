"""The `/train` modal's submission: validate, record and queue inside Slack's 3 s window."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App

from bot.forms import FormErrors, parse_train_submission
from bot.ids import CallbackId
from bot.listeners.reading import request_of
from bot.payloads import ViewSubmission
from bot.service import BotContext, submit_training


def register(app: App, ctx: BotContext) -> None:
    @app.view(CallbackId.TRAIN_MODAL.value)
    def handle_train_submission(ack: Ack, context: dict[str, Any]) -> None:
        submission: ViewSubmission = request_of(context)
        try:
            request = parse_train_submission(
                submission.view,
                user_id=submission.user_id,
                guard=ctx.services.deps.guard,
                max_upload_bytes=ctx.max_upload_bytes,
                default_lifetime=ctx.default_lifetime,
                max_lifetime=ctx.max_lifetime,
                budgets=ctx.budgets,
            )
        except FormErrors as invalid:
            ack(response_action="errors", errors=invalid.errors)
            return
        submit_training(ctx, request, context=context)
        ack()
