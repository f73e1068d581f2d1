"""The OAuth side of the fake Slack: the app's credentials, its consent page, oauth.v2.access,
and the workspaces that installed it, each with its own bot token.

What it mirrors:
- The consent step (docs.slack.dev/authentication/installing-with-oauth, "Asking for
  scopes"): the person opens https://slack.com/oauth/v2/authorize?client_id=...&scope=...
  &state=...[&redirect_uri=...]; Slack sends them back to the redirect URL with `code` and
  the same `state`, or with `error=access_denied`. A redirect_uri must be one of the app's
  Redirect URLs; without one, Slack uses the first configured. `approve` and `deny` stand in
  for the person's click and return the URL Slack redirects the browser to.
- oauth.v2.access (docs.slack.dev/reference/methods/oauth.v2.access, api.slack.com/methods/
  oauth.v2.access): no token; client_id and client_secret by HTTP Basic auth (preferred) or
  as form fields; `code` "expires after ten minutes" and is exchanged once (installing-with-
  oauth: "a temporary authorization code ... it expires after ten minutes"); `redirect_uri`
  "must match the originally submitted URI (if one was sent)". Errors: invalid_client_id,
  bad_client_secret, invalid_code, bad_redirect_uri. The answer's shape is the method page's
  example (access_token, token_type "bot", scope, bot_user_id, app_id, team, enterprise,
  is_enterprise_install, authed_user).
- Reinstalling keeps a workspace's bot token (Slack issues the same bot token until it is
  revoked); uninstalling revokes it, after which Slack answers token_revoked
  (docs.slack.dev/reference/methods/auth.test, errors).
"""

from __future__ import annotations

import base64
import itertools
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

AUTHORIZE_URL = "https://slack.com/oauth/v2/authorize"
CODE_LIFETIME_SECONDS = 600


class ConsentRefused(Exception):
    """Slack shows an error page instead of the consent screen (bad client_id, scope or
    redirect_uri): the browser is never sent back to the app."""


@dataclass
class Workspace:
    """A workspace the app is installed in, and its bot."""

    team_id: str
    team_name: str
    bot_token: str
    bot_user_id: str
    bot_id: str
    scopes: frozenset[str]
    enterprise_id: str | None = None
    revoked: bool = False


@dataclass
class _Grant:
    code: str
    team_id: str
    team_name: str
    enterprise_id: str | None
    user_id: str
    scopes: frozenset[str]
    redirect_uri: str | None  # as sent to the consent page; None: none was sent
    issued_at: float
    used: bool = False


@dataclass
class SlackOAuth:
    client_id: str = "1111.2222"
    client_secret: str = "fake-client-secret"
    app_id: str = "A0001"
    redirect_urls: list[str] = field(
        default_factory=lambda: ["https://trainbot.example/slack/oauth_redirect"]
    )
    known_scopes: frozenset[str] = frozenset()
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.grants: dict[str, _Grant] = {}
        self.by_token: dict[str, Workspace] = {}
        self.by_team: dict[str, Workspace] = {}
        self._seq = itertools.count(1)

    # -- the person at Slack's consent page --------------------------------------------------

    def approve(
        self,
        authorize_url: str,
        *,
        team_id: str,
        user_id: str,
        team_name: str | None = None,
        enterprise_id: str | None = None,
    ) -> str:
        """The person allows the install; the URL Slack redirects them to."""
        query, redirect = self._consent(authorize_url)
        scopes = frozenset(filter(None, query.get("scope", [""])[0].split(",")))
        code = f"code-{team_id}-{secrets.token_hex(8)}"
        self.grants[code] = _Grant(
            code=code,
            team_id=team_id,
            team_name=team_name or f"Workspace {team_id}",
            enterprise_id=enterprise_id,
            user_id=user_id,
            scopes=scopes,
            redirect_uri=query.get("redirect_uri", [None])[0],
            issued_at=self.clock(),
        )
        return _with_query(redirect, code=code, state=query.get("state", [""])[0])

    def deny(self, authorize_url: str) -> str:
        query, redirect = self._consent(authorize_url)
        return _with_query(redirect, error="access_denied", state=query.get("state", [""])[0])

    def _consent(self, authorize_url: str) -> tuple[dict[str, list[str]], str]:
        parts = urlsplit(authorize_url)
        if f"{parts.scheme}://{parts.netloc}{parts.path}" != AUTHORIZE_URL:
            raise ConsentRefused(f"not Slack's authorize URL: {authorize_url}")
        query = parse_qs(parts.query, keep_blank_values=True)
        if query.get("client_id", [""])[0] != self.client_id:
            raise ConsentRefused("invalid_client_id")
        scopes = set(filter(None, query.get("scope", [""])[0].split(",")))
        if not scopes or (self.known_scopes and not scopes <= self.known_scopes):
            raise ConsentRefused(f"invalid_scope: {sorted(scopes - self.known_scopes)}")
        redirect = query.get("redirect_uri", [None])[0]
        if redirect is not None and redirect not in self.redirect_urls:
            raise ConsentRefused("bad_redirect_uri: redirect_uri did not match any configured URIs")
        return query, redirect or self.redirect_urls[0]

    # -- oauth.v2.access ---------------------------------------------------------------------

    def exchange(self, params: dict[str, Any], authorization: str | None) -> dict[str, Any]:
        """The answer of oauth.v2.access (ok or not)."""
        client_id, client_secret = _credentials(params, authorization)
        if client_id != self.client_id:
            return {"ok": False, "error": "invalid_client_id"}
        if client_secret != self.client_secret:
            return {"ok": False, "error": "bad_client_secret"}
        grant = self.grants.get(str(params.get("code") or ""))
        if grant is None or grant.used or self.clock() - grant.issued_at > CODE_LIFETIME_SECONDS:
            return {"ok": False, "error": "invalid_code"}
        if (params.get("redirect_uri") or None) != grant.redirect_uri:
            return {"ok": False, "error": "bad_redirect_uri"}
        grant.used = True
        workspace = self._install(grant)
        return {
            "ok": True,
            "access_token": workspace.bot_token,
            "token_type": "bot",
            "scope": ",".join(sorted(workspace.scopes)),
            "bot_user_id": workspace.bot_user_id,
            "app_id": self.app_id,
            "team": {"id": workspace.team_id, "name": workspace.team_name},
            "enterprise": (
                {"id": grant.enterprise_id, "name": f"Org {grant.enterprise_id}"}
                if grant.enterprise_id
                else None
            ),
            "is_enterprise_install": False,
            "authed_user": {"id": grant.user_id},
        }

    def _install(self, grant: _Grant) -> Workspace:
        current = self.by_team.get(grant.team_id)
        if current is not None and not current.revoked:
            current.scopes = grant.scopes
            return current
        n = next(self._seq)
        workspace = Workspace(
            team_id=grant.team_id,
            team_name=grant.team_name,
            bot_token=f"xoxb-{grant.team_id}-{n}-{secrets.token_hex(6)}",
            bot_user_id=f"U0BOT{n:04d}",
            bot_id=f"B0BOT{n:04d}",
            scopes=grant.scopes,
            enterprise_id=grant.enterprise_id,
        )
        self.by_team[grant.team_id] = workspace
        self.by_token[workspace.bot_token] = workspace
        return workspace

    def uninstall(self, team_id: str) -> Workspace:
        """The workspace removed the app: its token is revoked at once."""
        workspace = self.by_team[team_id]
        workspace.revoked = True
        return workspace

    def installed(self) -> Iterable[Workspace]:
        return [w for w in self.by_team.values() if not w.revoked]


def _credentials(params: dict[str, Any], authorization: str | None) -> tuple[str, str]:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, client_secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return "", ""
        return client_id, client_secret
    return str(params.get("client_id") or ""), str(params.get("client_secret") or "")


def _with_query(url: str, **params: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
