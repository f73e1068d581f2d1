"""The Bolt app: built from a context, listeners registered one module per kind."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.listeners import actions, commands, events, reading, views
from bot.oauth import oauth_settings
from bot.service import BotContext

# Bolt runs every listener on its listener executor and acks only once the listener calls
# ack() there (slack_bolt/listener/thread_runner.py), so a request is acked only when a
# thread is free. Its default is 5 threads (slack_bolt/app/app.py), fewer than the web
# server's (bot/web.py THREADS): a few listeners still busy after their ack (views.open, a
# reply) would hold every other request's ack. Idle threads cost nothing until used.
LISTENER_THREADS = 32


def build_app(ctx: BotContext, client: WebClient) -> App:
    """One workspace with SLACK_BOT_TOKEN (the client carries it), or, in OAuth mode, every
    workspace that installed the app: Bolt then finds each request's bot token in the
    installation store (bot/oauth.py) and gives the listeners a client that carries it."""
    mode: dict[str, Any]
    if ctx.slack.oauth:
        mode = {"oauth_settings": oauth_settings(ctx.slack, ctx.services.engine)}
    else:
        # The token is checked on the first call rather than at start, so the service comes
        # up (and answers /healthz) even while Slack is unreachable.
        mode = {"token_verification_enabled": False}
    app = App(
        # Only the client, which carries the token (none in OAuth mode). (Bolt also reads
        # SLACK_BOT_TOKEN from the environment; `trainbot serve`/`socket` remove it there
        # once it is read.)
        client=client,
        signing_secret=ctx.slack.signing_secret,
        listener_executor=ThreadPoolExecutor(
            max_workers=LISTENER_THREADS, thread_name_prefix="listeners"
        ),
        **mode,
    )
    # Every payload is read into a typed request before any listener runs (Bolt's own
    # middleware, which checks the signature and answers url_verification, comes first).
    answers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="unreadable-answers")
    app.middleware(reading.ReadRequest(answers))
    for listeners in (commands, views, actions, events):
        listeners.register(app, ctx)
    return app
