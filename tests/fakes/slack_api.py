"""A fake Slack Web API on 127.0.0.1 that slack_sdk's WebClient talks to unchanged.

    with FakeSlack() as fake:
        client = WebClient(token=fake.token, base_url=fake.api_url)
        client.chat_postMessage(channel="C1", text="hi")
        assert fake.messages("C1")[0]["text"] == "hi"
        assert fake.rejections == []

It refuses what Slack refuses: a missing or wrong token, blocks and views over Block Kit's
limits, malformed metadata, more than one message a second into a channel and more calls to a
method in a minute than its rate-limit tier allows a workspace (both HTTP 429 with Retry-After;
tiers in tests.fakes.slack_tiers, refusals in `rate_limited`, the tier's also in
`tier_limited`), a method the token lacks the scope for (`scopes`, missing_scope), and channels
the bot may not use: it posts in a public channel without being a member only with
chat:write.public, never in a private one it was not invited to, and shares files only where it is
a member (join a public channel with conversations.join; `add_channel` sets up the others).
File uploads (files_upload_v2) and private file downloads go through the same server; those two non-API requests are recorded in `calls` as the pseudo-methods UPLOAD and
DOWNLOAD. apps.connections.open takes the app-level token (`app_token`, as a Bearer header
only) and answers with a URL from `socket_mode` (tests.fakes.slack_socket.FakeSocketMode.new_url).
Workspaces: the token given is the one workspace's (`team_id`); more install the app through
OAuth (`oauth`, tests.fakes.slack_oauth: the consent page and oauth.v2.access), each with its
own bot token. A channel or user belongs to one workspace (`add_channel(team_id=...)`,
`add_user(team_id=...)`; an unknown id belongs to the workspace that first names it), and
another workspace's token is told channel_not_found / user_not_found, as Slack tells a bot
about a conversation it cannot see (docs.slack.dev/reference/methods/chat.postMessage). A
revoked token (an uninstalled workspace) is answered token_revoked.
All state is guarded by one lock, so handlers on the server's threads never race.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, TypeVar, overload
from urllib.parse import quote

from tests.fakes.loopback import LoopbackService
from tests.fakes.slack_oauth import SlackOAuth, Workspace
from tests.fakes.slack_objects import (
    auth_test_answer,
    channel_object,
    file_object,
    message_object,
    permalink,
    user_object,
    view_object,
)
from tests.fakes.slack_requests import (
    SlackError,
    checked_view,
    json_field,
    message_content,
    multipart,
    parse_params,
    required,
)
from tests.fakes.slack_tiers import WINDOW_SECONDS, TierWindows

UPLOAD = "files:upload"  # POST of the bytes to the URL files.getUploadURLExternal returned
DOWNLOAD = "files:download"  # GET of a file's url_private(_download)
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
# docs.slack.dev/reference/methods/oauth.v2.access: "This method does not require a token".
NO_TOKEN_METHODS = frozenset({"oauth.v2.access"})
CHANNEL_MESSAGE_METHODS = frozenset(
    {"chat.postMessage", "chat.update", "chat.postEphemeral", "files.completeUploadExternal"}
)
T = TypeVar("T")

# The bot-token scopes each method takes (the "Scopes" of each method's page under
# docs.slack.dev/reference/methods/); any one of a set is enough. Views, auth.test and
# chat.getPermalink need none.
METHOD_SCOPES: dict[str, frozenset[str]] = {
    "chat.postMessage": frozenset({"chat:write"}),
    "chat.update": frozenset({"chat:write"}),
    "chat.postEphemeral": frozenset({"chat:write"}),
    "conversations.join": frozenset({"channels:join"}),
    "conversations.info": frozenset({"channels:read", "groups:read", "im:read", "mpim:read"}),
    "users.info": frozenset({"users:read"}),
    "files.info": frozenset({"files:read"}),
    "files.getUploadURLExternal": frozenset({"files:write"}),
    "files.completeUploadExternal": frozenset({"files:write"}),
}
# docs.slack.dev/reference/scopes/chat.write.public: "Send messages to channels your Slack app
# isn't a member of" (public channels only; it needs chat:write as well).
PUBLIC_POSTING_SCOPE = "chat:write.public"
ALL_SCOPES = frozenset(
    {PUBLIC_POSTING_SCOPE, "commands", "im:write"}.union(*METHOD_SCOPES.values())
)
# Conversation ids by kind: C a channel (public unless `add_channel` says private), G an older
# private channel, D a direct message; a user id (U, W) as `channel` is the DM with that user.
DIRECT_MESSAGE_PREFIXES = ("D", "U", "W")


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    headers: dict[str, str]  # names lower-cased
    at: float  # time.monotonic() when the request arrived
    status: int


@dataclass(frozen=True)
class Rejection:
    """A payload the fake refused as Slack would: the error code and why."""

    method: str
    error: str
    reasons: list[str]
    params: dict[str, Any]


@dataclass
class Conversation:
    id: str
    private: bool
    im: bool
    archived: bool = False
    bot_member: bool = False
    team_id: str = ""  # the workspace it belongs to


@dataclass
class _Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    tier_limited: bool = False


def _json_reply(data: dict[str, Any], status: int = 200, **headers: str) -> _Reply:
    body = json.dumps(data).encode()
    return _Reply(status, body, {"Content-Type": "application/json; charset=utf-8", **headers})


class FakeSlack(LoopbackService):
    def __init__(
        self,
        *,
        token: str = "xoxb-test-token",
        app_token: str = "xapp-1-A0001-test-token",
        socket_mode: Callable[[], str] | None = None,
        scopes: Iterable[str] | None = None,
        per_channel_interval: float = 1.0,
        retry_after: int = 1,
        trigger_ids: Iterable[str] | None = None,
        expired_trigger_ids: Iterable[str] = (),
        bot_user_id: str = "U0TRAINBOT",
        bot_id: str = "B0TRAINBOT",
        team_id: str = "T0TEAM",
        oauth: SlackOAuth | None = None,
        tier_limits: Mapping[str, int] | None = None,
        tier_window_seconds: float = WINDOW_SECONDS,
        tier_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token, self.app_token = token, app_token
        # Issues a Socket Mode websocket URL; None: the app has Socket Mode turned off.
        self.socket_mode = socket_mode
        # The bot token's scopes, as installed; None: every scope the fake knows.
        self.scopes = ALL_SCOPES if scopes is None else frozenset(scopes)
        self.per_channel_interval = per_channel_interval
        self.retry_after = retry_after
        # Calls a method may take per workspace per window; `tier_limits` overrides a method's
        # documented floor (a test that needs a small one); the window is a minute unless a
        # test shortens it, or moves `tier_clock` on, to see a slot free again.
        self._tiers = TierWindows(tier_limits, window=tier_window_seconds)
        self._tier_clock = tier_clock
        # None: any non-empty trigger_id opens a view once; a set: only those do.
        self.trigger_ids: set[str] | None = None if trigger_ids is None else set(trigger_ids)
        self.expired_trigger_ids: set[str] = set(expired_trigger_ids)
        self.bot_user_id, self.bot_id, self.team_id = bot_user_id, bot_id, team_id
        self.oauth = oauth or SlackOAuth(known_scopes=ALL_SCOPES)
        # The workspace whose token the request being answered carries.
        self._caller: Workspace | None = None
        self._user_teams: dict[str, str] = {}

        self.calls: list[Call] = []
        self.rejections: list[Rejection] = []
        self.rate_limited: list[Call] = []
        self.tier_limited: list[Call] = []  # those of rate_limited refused for the method's tier
        self.views: list[dict[str, Any]] = []  # every open/update/push/publish, in order
        self.home_views: dict[str, dict[str, Any]] = {}
        self.ephemeral: list[dict[str, Any]] = []
        self.uploads: list[dict[str, Any]] = []

        self._lock = threading.RLock()
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._views_by_id: dict[str, dict[str, Any]] = {}
        self._files: dict[str, dict[str, Any]] = {}
        self._contents: dict[str, bytes] = {}
        self._pending_uploads: dict[str, dict[str, Any]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._conversations: dict[str, Conversation] = {}
        self._used_triggers: set[str] = set()
        self._last_message_at: dict[str, float] = {}
        self._failures: dict[str, deque[str]] = {}
        self._forced_429: dict[str, int] = {}
        self._ts_micros = 1_733_000_000_000_000
        self._seq = itertools.count(1)
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "apps.connections.open": self._open_connection,
            "oauth.v2.access": self._oauth_access,
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update_message,
            "chat.postEphemeral": self._post_ephemeral,
            "chat.getPermalink": self._get_permalink,
            "views.open": lambda p: self._open_view("views.open", p),
            "views.push": lambda p: self._open_view("views.push", p),
            "views.update": self._update_view,
            "views.publish": self._publish_view,
            "conversations.join": self._join,
            "conversations.info": self._conversation_info,
            "users.info": self._user_info,
            "files.info": self._file_info,
            "files.getUploadURLExternal": self._get_upload_url,
            "files.completeUploadExternal": self._complete_upload,
        }
        super().__init__(_Handler)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    # -- what tests read ---------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    @overload
    def wait_for(self, what: str, timeout: float = 5.0) -> list[Call]: ...
    @overload
    def wait_for(self, what: Callable[[], T], timeout: float = 5.0) -> T: ...
    def wait_for(self, what: str | Callable[[], Any], timeout: float = 5.0) -> Any:
        """Poll until `what` (a method name: some call to it; a callable: a truthy result)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.calls_to(what) if isinstance(what, str) else what()
            if result:
                return result
            if time.monotonic() >= deadline:
                seen = [call.method for call in self.calls]
                raise AssertionError(f"waited {timeout}s for {what!r}; calls so far: {seen}")
            time.sleep(0.02)

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Every message in the channel, thread replies included, in the order posted."""
        with self._lock:
            return copy.deepcopy(self._messages.get(channel, []))

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self._find_message(channel, ts))

    def replies(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The replies in a thread, without its parent."""
        return [m for m in self.messages(channel) if m["thread_ts"] == thread_ts]

    def view(self, view_id: str) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self._views_by_id.get(view_id))

    # -- what tests set up -------------------------------------------------------------------

    def add_file(
        self, file_id: str, name: str, content: bytes, filetype: str = "csv"
    ) -> dict[str, Any]:
        """A file Slack already holds (as if a user uploaded it); returns its file object."""
        with self._lock:
            return self._register_file(file_id, name, content, filetype=filetype, title=name)

    def add_channel(
        self,
        channel_id: str,
        *,
        private: bool = False,
        archived: bool = False,
        member: bool = False,
        team_id: str | None = None,
    ) -> None:
        """A channel as Slack holds it; unknown C ids are public channels the bot is not in.
        `team_id`: the workspace it is in (default: the token's workspace)."""
        with self._lock:
            self._conversations[channel_id] = Conversation(
                channel_id,
                private=private,
                im=False,
                archived=archived,
                bot_member=member,
                team_id=team_id or self.team_id,
            )

    def remove_bot(self, channel_id: str) -> None:
        """Someone removed the bot from the channel (as /kick would)."""
        with self._lock:
            self._conversation(channel_id).bot_member = False

    def is_member(self, channel_id: str) -> bool:
        with self._lock:
            conversation = self._conversation(channel_id)
            return conversation.im or conversation.bot_member

    def add_user(
        self, user_id: str, *, team_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        with self._lock:
            self._users[user_id] = fields
            self._user_teams[user_id] = team_id or self.team_id
            return self._user_object(user_id)

    def workspace_of(self, channel_id: str) -> str | None:
        """The team a channel belongs to (None: no request or test has named it yet)."""
        with self._lock:
            found = self._conversations.get(channel_id)
            return found.team_id if found else None

    def fail_next(self, method: str, error: str = "channel_not_found", times: int = 1) -> None:
        with self._lock:
            self._failures.setdefault(method, deque()).extend([error] * times)

    def force_rate_limit(self, method: str, times: int = 1) -> None:
        with self._lock:
            self._forced_429[method] = self._forced_429.get(method, 0) + times

    def next_ts(self) -> str:
        """A message ts as Slack makes them: "1733000000.000100", unique and increasing."""
        with self._lock:
            self._ts_micros += 100
            seconds, micros = divmod(self._ts_micros, 1_000_000)
            return f"{seconds}.{micros:06d}"

    # -- request handling --------------------------------------------------------------------

    def _handle(self, command: str, path: str, headers: dict[str, str], body: bytes) -> _Reply:
        at = time.monotonic()
        path, _, query = path.partition("?")
        with self._lock:
            params: dict[str, Any]
            if path.startswith("/api/"):
                method = path.removeprefix("/api/")
                try:
                    params = parse_params(query, body, headers.get("content-type", ""))
                    reply = self._api(method, params, headers)
                except SlackError as exc:  # the body itself was unreadable
                    params, reply = {}, _json_reply({"ok": False, "error": exc.error})
            elif path.startswith("/upload/v1/") and command == "POST":
                method, params = UPLOAD, {"file_id": path.rsplit("/", 1)[1], "bytes": len(body)}
                reply = self._receive_upload(params["file_id"], body, headers)
            elif path.startswith("/files/") and command == "GET":
                method, params = DOWNLOAD, {"path": path}
                reply = self._download(path, headers.get("authorization"))
            elif path == "/signin":
                method, params = f"{command} {path}", {}
                page = b"<!DOCTYPE html><html><title>Sign in | Slack</title></html>"
                reply = _Reply(200, page, {"Content-Type": "text/html; charset=utf-8"})
            else:
                method, params, reply = f"{command} {path}", {}, _Reply(404, b"not found")
            call = Call(method, params, headers, at, reply.status)
            self.calls.append(call)
            if reply.status == 429:
                self.rate_limited.append(call)
            if reply.tier_limited:
                self.tier_limited.append(call)
            return reply

    def _api(self, method: str, params: dict[str, Any], headers: dict[str, str]) -> _Reply:
        handler = self._methods.get(method)
        if handler is None:
            return _json_reply({"ok": False, "error": "unknown_method", "req_method": method})
        if method in NO_TOKEN_METHODS:
            grant = self.oauth.grants.get(str(params.get("code") or ""))
            return self._within_tier(
                grant.team_id if grant else "",
                method,
                lambda: _json_reply(self.oauth.exchange(params, headers.get("authorization"))),
            )
        form_token = params.pop("token", None)
        if method in APP_TOKEN_METHODS:
            auth_error = self._app_auth_error(headers.get("authorization"))
        else:
            auth_error = self._auth_error(headers.get("authorization"), form_token)
        if auth_error:
            return _json_reply({"ok": False, "error": auth_error})
        self._caller = self._workspace_of_token(headers.get("authorization"), form_token)
        # The app-level token belongs to the app, not to a workspace.
        counted_for = f"app {self.oauth.app_id}" if method in APP_TOKEN_METHODS else self._team
        try:
            return self._within_tier(
                counted_for, method, lambda: self._answer(method, handler, params)
            )
        finally:
            self._caller = None

    def _within_tier(self, workspace: str, method: str, answer: Callable[[], _Reply]) -> _Reply:
        """Slack's per-method tiers (tests.fakes.slack_tiers): every call it answers counts,
        errors included, except one it refused with a 429 (of a tier or a channel)."""
        now = self._tier_clock()
        wait = self._tiers.retry_after(workspace, method, now)
        if wait is not None:
            reply = self._ratelimited(wait)
            reply.tier_limited = True
            return reply
        reply = answer()
        if reply.status != 429:
            self._tiers.accept(workspace, method, now)
        return reply

    def _answer(
        self,
        method: str,
        handler: Callable[[dict[str, Any]], dict[str, Any]],
        params: dict[str, Any],
    ) -> _Reply:
        needed = METHOD_SCOPES.get(method)
        if needed and not needed & self._scopes:
            # docs.slack.dev/reference/methods/*: "missing_scope: The token used is not granted
            # the specific scope permissions required"; the answer names needed and provided.
            return _json_reply(
                {
                    "ok": False,
                    "error": "missing_scope",
                    "needed": ",".join(sorted(needed)),
                    "provided": ",".join(sorted(self._scopes)),
                }
            )
        if self._forced_429.get(method):
            self._forced_429[method] -= 1
            return self._ratelimited()
        if self._failures.get(method):
            return _json_reply({"ok": False, "error": self._failures[method].popleft()})
        channel = _target_channel(method, params)
        if channel and self._foreign(channel):
            # Checked before the channel's rate limit: to this workspace it does not exist.
            return _json_reply({"ok": False, "error": "channel_not_found"})
        last = self._last_message_at.get(channel or "")
        if channel and last is not None and time.monotonic() - last < self.per_channel_interval:
            return self._ratelimited()
        try:
            result = handler(params)
        except SlackError as exc:
            answer: dict[str, Any] = {"ok": False, "error": exc.error}
            if exc.reasons:
                self.rejections.append(Rejection(method, exc.error, exc.reasons, params))
                messages = [f"[ERROR] {reason}" for reason in exc.reasons]
                answer |= {"errors": exc.reasons, "response_metadata": {"messages": messages}}
            return _json_reply(answer)
        if channel:
            self._last_message_at[channel] = time.monotonic()
        return _json_reply({"ok": True, **result})

    def _auth_error(self, authorization: str | None, form_token: Any) -> str | None:
        if authorization is None and form_token is None:
            return "not_authed"
        token = _bearer(authorization) or form_token
        if token == self.token:
            return None
        installed = self.oauth.by_token.get(str(token))
        if installed is None:
            return "invalid_auth"
        return "token_revoked" if installed.revoked else None

    def _workspace_of_token(self, authorization: str | None, form_token: Any) -> Workspace:
        token = _bearer(authorization) or form_token
        installed = self.oauth.by_token.get(str(token))
        if installed is not None:
            return installed
        return Workspace(
            team_id=self.team_id,
            team_name="Fake Workspace",
            bot_token=self.token,
            bot_user_id=self.bot_user_id,
            bot_id=self.bot_id,
            scopes=self.scopes,
        )

    @property
    def _scopes(self) -> frozenset[str]:
        return self._caller.scopes if self._caller else self.scopes

    @property
    def _team(self) -> str:
        return self._caller.team_id if self._caller else self.team_id

    @property
    def _bot_user(self) -> str:
        return self._caller.bot_user_id if self._caller else self.bot_user_id

    @property
    def _bot(self) -> str:
        return self._caller.bot_id if self._caller else self.bot_id

    def _app_auth_error(self, authorization: str | None) -> str | None:
        if authorization is None:  # Slack refuses the app token as a form field here
            return "not_authed"
        if authorization == f"Bearer {self.app_token}":
            return None
        return (
            "not_allowed_token_type" if authorization == f"Bearer {self.token}" else "invalid_auth"
        )

    def _ratelimited(self, retry_after: int | None = None) -> _Reply:
        retry = {"Retry-After": str(retry_after or self.retry_after)}
        return _json_reply({"ok": False, "error": "ratelimited"}, status=429, **retry)

    # -- apps --------------------------------------------------------------------------------

    def _open_connection(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.socket_mode is None:
            raise SlackError("socket_mode_not_enabled")  # the fake's own code for a setup slip
        return {"url": self.socket_mode()}

    # -- chat --------------------------------------------------------------------------------

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        """docs.slack.dev/reference/methods/auth.test: who the token is, in its workspace."""
        enterprise = self._caller.enterprise_id if self._caller else None
        answer = auth_test_answer(team_id=self._team, user_id=self._bot_user, bot_id=self._bot)
        return answer | ({"enterprise_id": enterprise} if enterprise else {})

    def _oauth_access(self, params: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("answered in _api: oauth.v2.access takes no token")

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = required(params, "channel", "channel_not_found")
        self._check_can_post(channel)
        content = message_content(params, update=False)
        message = self._new_message(channel, params.get("thread_ts"), **content)
        return {"channel": channel, "ts": message["ts"], "message": copy.deepcopy(message)}

    def _update_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = required(params, "channel", "channel_not_found")
        self._check_can_post(channel)
        message = self._find_message(channel, str(params.get("ts", "")))
        if message is None:
            raise SlackError("message_not_found")
        content = message_content(params, update=True)
        # Slack keeps what an update leaves out; an empty list or object clears it.
        message.update({key: value or None for key, value in content.items()})
        message["text"] = message["text"] or ""
        message["edited"] = {"user": self._bot_user, "ts": self.next_ts()}
        reply = copy.deepcopy(message)
        return {"channel": channel, "ts": message["ts"], "text": message["text"], "message": reply}

    def _post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = required(params, "channel", "channel_not_found")
        user = required(params, "user", "user_not_in_channel")
        self._conversation(channel)  # another workspace's channel: channel_not_found
        self._check_user(user)
        content = message_content(params, update=False)
        ts = self.next_ts()
        self.ephemeral.append(
            {"channel": channel, "user": user, "ts": ts, "thread_ts": params.get("thread_ts")}
            | {"text": "", "blocks": None}
            | content
        )
        return {"message_ts": ts}

    def _get_permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = required(params, "channel", "channel_not_found")
        message = self._find_message(channel, str(params.get("message_ts", "")))
        if message is None:
            raise SlackError("message_not_found")
        return {"channel": channel, "permalink": permalink(message)}

    def _new_message(self, channel: str, thread_ts: str | None, **content: Any) -> dict[str, Any]:
        message = message_object(
            ts=self.next_ts(),
            channel=channel,
            user=self._bot_user,
            bot_id=self._bot,
            thread_ts=thread_ts,
            **content,
        )
        self._messages.setdefault(channel, []).append(message)
        return message

    def _find_message(self, channel: str, ts: str) -> dict[str, Any] | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    # -- views -------------------------------------------------------------------------------

    def _open_view(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        trigger_id = str(params.get("trigger_id") or "")
        if not trigger_id:
            raise SlackError("invalid_arguments", ["trigger_id is required"])
        if trigger_id in self.expired_trigger_ids:
            raise SlackError("expired_trigger_id")
        if trigger_id in self._used_triggers:
            raise SlackError("exchanged_trigger_id")
        if self.trigger_ids is not None and trigger_id not in self.trigger_ids:
            raise SlackError("invalid_trigger_id")
        view = checked_view(params)
        self._used_triggers.add(trigger_id)
        return {"view": self._store_view(method, view, trigger_id=trigger_id)}

    def _update_view(self, params: dict[str, Any]) -> dict[str, Any]:
        external_id = params.get("external_id")
        view_id = params.get("view_id") or next(
            (
                v["id"]
                for v in self._views_by_id.values()
                if external_id and v.get("external_id") == external_id
            ),
            None,
        )
        current = self._views_by_id.get(str(view_id))
        if current is None:
            raise SlackError("not_found")
        if params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        view = checked_view(params)
        return {"view": self._store_view("views.update", view, view_id=current["id"])}

    def _publish_view(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = required(params, "user_id", "user_not_found")
        self._check_user(user_id)
        view = checked_view(params)
        if view.get("type") != "home":
            raise SlackError("invalid_arguments", ["views.publish only takes a home view"])
        current = self.home_views.get(user_id)
        if current and params.get("hash") and params["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        view_id = current["id"] if current else None
        stored = self._store_view("views.publish", view, view_id=view_id, user_id=user_id)
        self.home_views[user_id] = copy.deepcopy(stored)
        return {"view": stored}

    def _store_view(
        self,
        method: str,
        view: dict[str, Any],
        *,
        view_id: str | None = None,
        trigger_id: str | None = None,
        user_id: str | None = None,
    ) -> dict[str, Any]:
        view_id = view_id or self._new_id("V")
        view_hash = f"{self.next_ts()}.{view_id}"
        stored = view_object(
            view, view_id=view_id, view_hash=view_hash, team_id=self._team, bot_id=self._bot
        )
        self._views_by_id[view_id] = stored
        record = {"method": method, "view_id": view_id, "view": copy.deepcopy(view)}
        self.views.append(record | {"trigger_id": trigger_id, "user_id": user_id})
        return copy.deepcopy(stored)

    # -- conversations and users -------------------------------------------------------------

    def _conversation(self, channel_id: str) -> Conversation:
        found = self._conversations.get(channel_id)
        if found is None:
            im = channel_id.startswith(DIRECT_MESSAGE_PREFIXES)
            private = channel_id.startswith("G")
            team = self._user_teams.get(channel_id, self._team) if im else self._team
            found = Conversation(channel_id, private=private, im=im, bot_member=im, team_id=team)
            self._conversations[channel_id] = found
        if self._caller is not None and found.team_id != self._caller.team_id:
            # Another workspace's conversation does not exist for this workspace's bot.
            raise SlackError("channel_not_found")
        return found

    def _foreign(self, channel_id: str) -> bool:
        found = self._conversations.get(channel_id)
        return bool(self._caller and found and found.team_id != self._caller.team_id)

    def _check_user(self, user_id: str) -> None:
        team = self._user_teams.get(user_id)
        if self._caller is not None and team is not None and team != self._caller.team_id:
            raise SlackError("user_not_found")

    def _check_can_post(self, channel_id: str) -> None:
        """chat.postMessage / chat.update: the errors of docs.slack.dev/reference/methods/
        chat.postMessage. A private channel the bot is not in does not exist for it."""
        conversation = self._conversation(channel_id)
        if conversation.private and not conversation.bot_member:
            raise SlackError("channel_not_found")
        if conversation.archived:
            raise SlackError("is_archived")
        if not conversation.im and not conversation.bot_member:
            if PUBLIC_POSTING_SCOPE not in self._scopes:
                raise SlackError("not_in_channel")

    def _check_can_share(self, channel_id: str) -> None:
        """files.completeUploadExternal (docs.slack.dev/reference/methods/
        files.completeUploadExternal): "not_in_channel: User/bot membership is required for the
        specified channel". chat:write.public does not cover file shares."""
        conversation = self._conversation(channel_id)
        if conversation.private and not conversation.bot_member:
            raise SlackError("channel_not_found")
        if conversation.archived:
            raise SlackError("is_archived")
        if not conversation.im and not conversation.bot_member:
            raise SlackError("not_in_channel")

    def _join(self, params: dict[str, Any]) -> dict[str, Any]:
        """docs.slack.dev/reference/methods/conversations.join: a bot joins public channels
        only; private channels and DMs answer method_not_supported_for_channel_type (as Slack
        does for a private channel, e.g. github.com/argoproj/argo-events/issues/1077), and an
        already-joined channel answers ok with the warning already_in_channel."""
        channel = required(params, "channel", "channel_not_found")
        conversation = self._conversation(channel)
        if conversation.im or conversation.private:
            raise SlackError("method_not_supported_for_channel_type")
        if conversation.archived:
            raise SlackError("is_archived")
        already = conversation.bot_member
        conversation.bot_member = True
        answer: dict[str, Any] = {"channel": self._channel_object(conversation)}
        if already:
            warnings = ["already_in_channel"]
            answer |= {"warning": warnings[0], "response_metadata": {"warnings": warnings}}
        return answer

    def _conversation_info(self, params: dict[str, Any]) -> dict[str, Any]:
        conversation = self._conversation(required(params, "channel", "channel_not_found"))
        if conversation.private and not conversation.bot_member:
            raise SlackError("channel_not_found")
        return {"channel": self._channel_object(conversation)}

    def _channel_object(self, conversation: Conversation) -> dict[str, Any]:
        return channel_object(
            conversation.id,
            is_member=conversation.im or conversation.bot_member,
            is_private=conversation.private,
            is_im=conversation.im,
            is_archived=conversation.archived,
        )

    def _user_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = required(params, "user", "user_not_found")
        self._check_user(user_id)
        return {"user": self._user_object(user_id)}

    def _user_object(self, user_id: str) -> dict[str, Any]:
        team = self._user_teams.get(user_id, self._team)
        return user_object(user_id, team_id=team, overrides=self._users.get(user_id, {}))

    # -- files -------------------------------------------------------------------------------

    def _file_info(self, params: dict[str, Any]) -> dict[str, Any]:
        file = self._files.get(str(params.get("file", "")))
        if file is None:
            raise SlackError("file_not_found")
        return {"file": copy.deepcopy(file)}

    def _get_upload_url(self, params: dict[str, Any]) -> dict[str, Any]:
        filename = required(params, "filename", "invalid_arguments")
        length = str(params.get("length", ""))
        if not length.isdigit():
            raise SlackError("invalid_arguments", ["length must be the file size in bytes"])
        file_id = self._new_id("F")
        self._pending_uploads[file_id] = {"name": filename, "length": int(length), "content": None}
        return {"file_id": file_id, "upload_url": f"{self.base_url}/upload/v1/{file_id}"}

    def _receive_upload(self, file_id: str, body: bytes, headers: dict[str, str]) -> _Reply:
        pending = self._pending_uploads.get(file_id)
        if pending is None:
            return _Reply(404, b"upload URL not found")
        content_type = headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            parts = multipart(body, content_type)
            body = next((v for v in parts.values() if isinstance(v, bytes)), b"")
        pending["content"] = body
        return _Reply(200, f"OK - {len(body)}".encode(), {"Content-Type": "text/plain"})

    def _complete_upload(self, params: dict[str, Any]) -> dict[str, Any]:
        entries = json_field(params.get("files"), "invalid_arguments")
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments", ["files must be a non-empty array"])
        channel = _target_channel("files.completeUploadExternal", params)
        thread_ts = params.get("thread_ts")
        if thread_ts and not channel:
            raise SlackError("invalid_arguments", ["thread_ts needs channel_id"])
        shares = params.get("channel_id") or str(params.get("channels") or "")
        for share in filter(None, str(shares).split(",")):
            self._check_can_share(share.strip())
        ids = [str(entry.get("id")) if isinstance(entry, dict) else "" for entry in entries]
        pending = [self._pending_uploads.get(file_id) for file_id in ids]
        if any(p is None or p["content"] is None for p in pending):
            raise SlackError("file_not_found")
        files = []
        for file_id, entry, upload in zip(ids, entries, pending, strict=True):
            assert upload is not None
            self._pending_uploads.pop(file_id)
            title = entry.get("title") or upload["name"]
            files.append(
                self._register_file(file_id, upload["name"], upload["content"], title=title)
            )
            where = {"channel": channel, "thread_ts": thread_ts or None}
            comment = {"initial_comment": params.get("initial_comment")}
            record = {"id": file_id, "name": upload["name"], "title": title}
            self.uploads.append(record | {"content": upload["content"]} | where | comment)
        if channel:
            self._new_message(channel, thread_ts, text=params.get("initial_comment"), files=files)
        return {"files": copy.deepcopy(files)}

    def _register_file(
        self, file_id: str, name: str, content: bytes, *, title: str, filetype: str | None = None
    ) -> dict[str, Any]:
        file = file_object(
            base_url=self.base_url,
            file_id=file_id,
            name=name,
            size=len(content),
            title=title,
            filetype=filetype,
            user=self._bot_user,
        )
        self._files[file_id], self._contents[file_id] = file, content
        return copy.deepcopy(file)

    def _download(self, path: str, authorization: str | None) -> _Reply:
        if authorization is None:  # Slack sends a browser without a token to its sign-in page
            return _Reply(302, b"", {"Location": f"{self.base_url}/signin?redir={quote(path)}"})
        if authorization != f"Bearer {self.token}":
            return _Reply(403, b"forbidden", {"Content-Type": "text/plain"})
        file_id = path.split("/")[2]
        if file_id not in self._files:
            return _Reply(404, b"file not found", {"Content-Type": "text/plain"})
        file = self._files[file_id]
        headers = {"Content-Type": file["mimetype"]}
        return _Reply(200, self._contents[file_id], headers)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}0{next(self._seq):08d}"


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self._respond()

    def do_POST(self) -> None:
        self._respond()

    def _respond(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        fake: FakeSlack = self.server.fake  # type: ignore[attr-defined]
        reply = fake._handle(self.command, self.path, headers, body)
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean


def _target_channel(method: str, params: dict[str, Any]) -> str | None:
    if method not in CHANNEL_MESSAGE_METHODS:
        return None
    channel = params.get("channel") or params.get("channel_id")
    return channel or str(params.get("channels") or "").split(",")[0] or None


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return token if scheme == "Bearer" else None
