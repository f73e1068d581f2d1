"""Runs before every listener: the payload becomes a typed request in `context`, or is
answered here when it cannot be read. Listeners never see a shape they cannot use."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.middleware import Middleware
from slack_sdk import WebClient

from bot import blocks
from bot.ids import TRAIN_COMMAND, BlockId, CallbackId
from bot.payloads import SlackRequest, Unreadable, kind_of, read_request

log = logging.getLogger(__name__)

REQUEST = "trainbot_request"  # the key of the typed request in Bolt's context
COULD_NOT_READ = f"This request could not be read; run `{TRAIN_COMMAND}` again."
FORM_NOT_READ = f"This form could not be read; close it and run `{TRAIN_COMMAND}` again."


def request_of(context: dict[str, Any]) -> Any:
    """The typed request ReadRequest put in `context` (listeners narrow it by annotation)."""
    found: SlackRequest = context[REQUEST]
    return found


class ReadRequest(Middleware):
    """A class middleware, not a function: Bolt builds a function middleware's arguments
    from the raw body (slack_bolt/kwargs_injection/utils.py calls to_action, to_view, ...
    eagerly), which is exactly what fails on the shapes this turns away."""

    def __init__(self, answers: ThreadPoolExecutor) -> None:
        self.answers = answers  # tells people after the ack, off the request thread

    def process(
        self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        try:
            request = read_request(req.body)
        except Unreadable as unreadable:
            log.warning("%s", unreadable)
            return self._answer(unreadable, req.context.client)
        if request is None:
            # The answer Bolt gives a request no listener takes, without its routing (which
            # indexes the payload unchecked) and without its log of the whole body.
            log.warning("no listener for a %s payload", kind_of(req.body))
            return BoltResponse(status=404, body={"error": "unhandled request"})
        req.context[REQUEST] = request
        return next()

    def _answer(self, unreadable: Unreadable, client: WebClient | None) -> BoltResponse:
        if unreadable.kind == "command":
            # A slash command's ack is shown to the person who typed it.
            return BoltResponse(status=200, body=blocks.error_message(COULD_NOT_READ).as_kwargs())
        if unreadable.kind == "view_submission":
            if unreadable.callback_id == CallbackId.TRAIN_MODAL:
                return BoltResponse(
                    status=200,
                    body={"response_action": "errors", "errors": {BlockId.NAME: FORM_NOT_READ}},
                )
            return BoltResponse(status=200, body="")  # a plain ack: the view closes
        if unreadable.kind == "block_actions" and unreadable.user_id and client is not None:
            user = unreadable.user_id
            channel = unreadable.channel_id or user  # no channel: the app's DM with them
            future = self.answers.submit(
                client.chat_postEphemeral,
                channel=channel,
                user=user,
                **blocks.error_message(COULD_NOT_READ).as_kwargs(),
            )
            future.add_done_callback(_log_failure)
        return BoltResponse(status=200, body="")


def _log_failure(future: Future[Any]) -> None:
    error = future.exception()
    if error is not None:
        log.warning("could not tell the person their request was unreadable: %s", error)
