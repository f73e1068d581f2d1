"""Many workspaces: Bolt's OAuth flow on TrainBot's database, and the bot token of each.

In OAuth mode (SLACK_CLIENT_ID and SLACK_CLIENT_SECRET, no SLACK_BOT_TOKEN) each workspace
installs the app at /slack/install; Slack sends the person back to /slack/oauth_redirect with
a code, which Bolt exchanges (oauth.v2.access) for that workspace's bot token. slack_sdk's
SQLAlchemy stores keep installations and OAuth states in TrainBot's own database, in the
tables migration 0004 creates (so every web process shares them, and a restart keeps them).

`client_for(team_id, enterprise_id)` is how code outside a Slack request (the notifier) gets
the client of a job's workspace: None once the workspace uninstalled the app.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Sequence

from slack_bolt.oauth.callback_options import CallbackOptions, FailureArgs, SuccessArgs
from slack_bolt.oauth.oauth_settings import OAuthSettings
from slack_bolt.response import BoltResponse
from slack_sdk import WebClient
from slack_sdk.oauth import OAuthStateUtils
from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy.engine import Engine

from bot.settings import INSTALL_PATH, REDIRECT_PATH, SlackSettings
from bot.slack_client import build_web_client

ClientFor = Callable[[str | None, str | None], WebClient | None]

# An install must finish within this long of opening /slack/install (slack_sdk's default).
STATE_SECONDS = 600
# How long a found bot token is reused before the database is asked again. An uninstall in
# this process forgets it at once; another process may keep it this long, and Slack answers
# a revoked token with token_revoked, so no message gets through either way.
CLIENT_CACHE_SECONDS = 5.0

# What the person who installed sees; Bolt's default pages say "Oops" and name an internal
# reason, or link nowhere on success.
FAILURE_TEXT = {
    "invalid_browser": "this install link was opened in another browser, or its cookie is gone",
    "invalid_state": "this install link was used already or has expired",
    "access_denied": "the installation was cancelled in Slack",
    "missing_code": "Slack sent no authorization code",
    "invalid_code": "Slack did not accept the authorization code",
    "storage_error": "the installation could not be saved",
}


def installation_store(slack: SlackSettings, engine: Engine) -> SQLAlchemyInstallationStore:
    return SQLAlchemyInstallationStore(client_id=slack.client_id, engine=engine)


def state_store(engine: Engine) -> SQLAlchemyOAuthStateStore:
    return SQLAlchemyOAuthStateStore(expiration_seconds=STATE_SECONDS, engine=engine)


def oauth_settings(slack: SlackSettings, engine: Engine) -> OAuthSettings:
    """Bolt's OAuth flow on TrainBot's database. The tables come from the migrations, never
    from the stores' create_tables()."""
    return OAuthSettings(
        client_id=slack.client_id,
        client_secret=slack.client_secret,
        scopes=slack.scopes,
        user_scopes=[],
        redirect_uri=slack.redirect_uri or None,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        # Straight to Slack's consent page: the link *is* the "Add to Slack" button.
        install_page_rendering_enabled=False,
        installation_store=installation_store(slack, engine),
        installation_store_bot_only=True,  # TrainBot acts only as its bot user
        state_store=state_store(engine),
        state_expiration_seconds=STATE_SECONDS,
        callback_options=CallbackOptions(success=_installed_page, failure=_failed_page),
    )


def _installed_page(args: SuccessArgs) -> BoltResponse:
    # The workspace's name is the only text from outside, and anyone can name a workspace.
    team = html.escape(args.installation.team_name or args.installation.team_id or "your workspace")
    return _page(
        200,
        "TrainBot is installed",
        f"TrainBot is installed in {team}. Type /train in any channel to start.",
        args.settings.state_utils,
    )


def _failed_page(args: FailureArgs) -> BoltResponse:
    why = FAILURE_TEXT.get(args.reason, "the installation did not complete")
    return _page(
        args.suggested_status_code,
        "TrainBot was not installed",
        f"TrainBot was not installed: {why}. Start again from {INSTALL_PATH}.",
        args.settings.state_utils,
    )


def _page(status: int, title: str, text: str, state_utils: OAuthStateUtils) -> BoltResponse:
    # Nothing of the request is echoed back (a reason Bolt did not expect shows as the
    # generic sentence).
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>"
    )
    headers: dict[str, str | Sequence[str]] = {
        "Content-Type": "text/html; charset=utf-8",
        # The state cookie has done its job (or failed it); Bolt's own pages clear it too.
        "Set-Cookie": state_utils.build_set_cookie_for_deletion(),
    }
    return BoltResponse(status=status, body=page, headers=headers)


class InstalledClients:
    """`client_for` in OAuth mode: the bot token each workspace installed, from the store.

    An Enterprise Grid org-wide install keeps one bot for the whole org (team_id NULL in the
    store), so a job of one of its workspaces falls back to the org's bot.
    """

    def __init__(
        self,
        slack: SlackSettings,
        store: SQLAlchemyInstallationStore,
        *,
        ttl: float = CLIENT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slack, self.store, self.ttl, self.clock = slack, store, ttl, clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str | None, str | None], tuple[float, WebClient]] = {}

    def __call__(self, team_id: str | None, enterprise_id: str | None) -> WebClient | None:
        key = (team_id, enterprise_id)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and self.clock() - cached[0] < self.ttl:
                return cached[1]
        token = self._bot_token(team_id, enterprise_id)
        if token is None:
            self.forget(team_id, enterprise_id)
            return None
        client = build_web_client(self.slack, token=token)
        with self._lock:
            self._cache[key] = (self.clock(), client)
        return client

    def forget(self, team_id: str | None, enterprise_id: str | None) -> None:
        """Drops the cached client of a workspace (team None: every one of the org)."""
        with self._lock:
            for key in list(self._cache):
                if (key[0] == team_id) if team_id is not None else (key[1] == enterprise_id):
                    del self._cache[key]

    def _bot_token(self, team_id: str | None, enterprise_id: str | None) -> str | None:
        if team_id is None and enterprise_id is None:
            return None  # a job from the CLI belongs to no workspace
        bot = self.store.find_bot(enterprise_id=enterprise_id, team_id=team_id)
        if bot is None and enterprise_id is not None:
            bot = self.store.find_bot(
                enterprise_id=enterprise_id, team_id=None, is_enterprise_install=True
            )
        return bot.bot_token if bot is not None else None


def single_workspace_clients(client: WebClient) -> ClientFor:
    """`client_for` with SLACK_BOT_TOKEN: every job is the one workspace's."""

    def client_for(team_id: str | None, enterprise_id: str | None) -> WebClient | None:
        return client

    return client_for


def client_for(slack: SlackSettings, engine: Engine, client: WebClient) -> ClientFor:
    """The notifier's way to a job's workspace, in either mode."""
    if slack.oauth:
        return InstalledClients(slack, installation_store(slack, engine))
    return single_workspace_clients(client)
