"""Every Slack payload TrainBot handles, read once into a typed request.

Two readings, both here so that one module knows what a payload may look like:
- `check_envelope`: the body is a form or JSON object whose top-level fields have the types
  Bolt itself reads before any listener runs (it indexes them without checking). The HTTP
  gate refuses anything else with a 400.
- `read_request`: the fields a listener uses, as a typed request; an unexpected shape is an
  `Unreadable` that says who (if anyone) can be told.

A new kind of listener gets its reader here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from slack_bolt.request.internals import parse_body

from bot.ids import TRAIN_COMMAND

# slack_bolt/request/internals.py (build_context and the extract_* it calls) reads these as
# a string or an object with "id" ("id" in value, value.get(...)); anything else raises.
_IDENTITY_FIELDS = ("user", "team", "channel", "enterprise")
# ... and looks into these (when they are objects) for the same identity fields.
_NESTED = ("event", "message", "previous_message", "item", "assistant_thread")
# ... indexes these as lists of objects (payload["authorizations"][0], .get on each url).
_LISTS_OF_OBJECTS = ("authorizations", "response_urls")


class EnvelopeError(Exception):
    """A signed body Bolt could not read: not a form or JSON object, or of the wrong types."""


@dataclass(frozen=True)
class SlashCommand:
    command: str
    text: str
    user_id: str
    channel_id: str
    trigger_id: str


@dataclass(frozen=True)
class BlockAction:
    action_id: str
    value: str | None  # link buttons send none
    user_id: str
    channel_id: str | None


@dataclass(frozen=True)
class ViewSubmission:
    callback_id: str
    user_id: str
    # The view as Slack sent it; its state.values is an object of objects of objects and
    # its private_metadata a string, so the form's own parser can read it as it is.
    view: dict[str, Any]


@dataclass(frozen=True)
class HomeOpened:
    user_id: str
    tab: str


@dataclass(frozen=True)
class Revoked:
    """app_uninstalled (`everything`) or tokens_revoked: the workspace is in Bolt's context."""

    everything: bool
    bot: bool  # the bot token was revoked
    user_ids: tuple[str, ...] = ()  # users whose own tokens were revoked


SlackRequest = SlashCommand | BlockAction | ViewSubmission | HomeOpened | Revoked


class Unreadable(Exception):
    """A payload of a kind we handle, in a shape we cannot use. `user_id`, `channel_id` and
    `callback_id` are what could be read of it, to answer the person where possible."""

    def __init__(
        self,
        kind: str,
        reason: str,
        *,
        user_id: str | None = None,
        channel_id: str | None = None,
        callback_id: str | None = None,
    ) -> None:
        super().__init__(f"could not read a {kind} payload: {reason}")
        self.kind = kind
        self.reason = reason
        self.user_id = user_id
        self.channel_id = channel_id
        self.callback_id = callback_id


def check_envelope(text: str, content_type: str | None) -> dict[str, Any]:
    """The body as Bolt will read it (Bolt's own parser), or EnvelopeError."""
    kind = (content_type or "").split(";")[0].strip() or None  # as Bolt's extract_content_type
    try:
        body = parse_body(text, kind)
    except (ValueError, RecursionError) as error:  # bad JSON, giant ints, deep nesting
        raise EnvelopeError(f"body is not a form or JSON object ({type(error).__name__})") from None
    if not isinstance(body, dict):
        raise EnvelopeError(f"payload is a JSON {type(body).__name__}, not an object")
    problem = _envelope_problem(body, depth=0)
    if problem:
        raise EnvelopeError(problem)
    return body


def _envelope_problem(body: Mapping[str, Any], depth: int) -> str | None:
    for name in _IDENTITY_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, str | dict):
            return f"{name} is a {type(value).__name__}"
    for name in _LISTS_OF_OBJECTS:
        value = body.get(name)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(item, dict) for item in value)
        ):
            return f"{name} is not a list of objects"
    if depth == 0 and "event" in body and not isinstance(body["event"], dict):
        # slack_bolt/middleware/ignoring_self_events: req.body.get("event", {}).get(...)
        return "event is not an object"
    if depth < 3:
        for name in _NESTED:
            nested = body.get(name)
            if isinstance(nested, dict):
                problem = _envelope_problem(nested, depth + 1)
                if problem:
                    return f"{name}.{problem}"
    return None


def read_request(body: Mapping[str, Any]) -> SlackRequest | None:
    """The typed request, None for a kind TrainBot has no listener for, or Unreadable."""
    if "command" in body:  # slack_bolt/request/payload_utils.py is_slash_command
        return _command(body)
    kind = body.get("type")
    if kind == "block_actions":
        return _block_action(body)
    if kind == "view_submission":
        return _view_submission(body)
    if kind == "event_callback":
        event = body.get("event")
        if isinstance(event, dict) and event.get("type") == "app_home_opened":
            return _home_opened(event)
        if isinstance(event, dict) and event.get("type") in ("app_uninstalled", "tokens_revoked"):
            return _revoked(event)
    return None


def kind_of(body: Mapping[str, Any]) -> str:
    """A short name for the log: the command or payload type, never more of the body."""
    if "command" in body:
        return "command"
    kind = body.get("type")
    if kind == "event_callback" and isinstance(body.get("event"), dict):
        kind = body["event"].get("type")
    return kind[:40] if isinstance(kind, str) else "untyped"


def _command(body: Mapping[str, Any]) -> SlashCommand | None:
    # Slack sends every field of a command as form text; text and trigger_id may be empty.
    fields = {
        "command": body.get("command"),
        "text": body.get("text", ""),
        "user_id": body.get("user_id"),
        "channel_id": body.get("channel_id"),
        "trigger_id": body.get("trigger_id", ""),
    }
    text = {name: value for name, value in fields.items() if isinstance(value, str)}
    user = text.get("user_id")
    wrong = [name for name in fields if name not in text]
    if wrong:
        raise Unreadable("command", f"{', '.join(wrong)} missing or not text", user_id=user)
    if not user:
        raise Unreadable("command", "user_id is empty")
    if text["command"] != TRAIN_COMMAND:
        return None
    return SlashCommand(
        command=text["command"],
        text=text["text"],
        user_id=text["user_id"],
        channel_id=text["channel_id"],
        trigger_id=text["trigger_id"],
    )


def _user_id(body: Mapping[str, Any]) -> str | None:
    user = body.get("user")
    found = user.get("id") if isinstance(user, dict) else None
    return found if isinstance(found, str) and found else None


def _block_action(body: Mapping[str, Any]) -> BlockAction:
    user_id = _user_id(body)
    channel = body.get("channel")
    container = body.get("container")
    channel_id = channel.get("id") if isinstance(channel, dict) else None
    if channel_id is None and isinstance(container, dict):
        channel_id = container.get("channel_id")

    def unreadable(reason: str) -> Unreadable:
        where = channel_id if isinstance(channel_id, str) and channel_id else None
        return Unreadable("block_actions", reason, user_id=user_id, channel_id=where)

    if user_id is None:
        raise unreadable("no user id")
    if channel_id is not None and not isinstance(channel_id, str):
        raise unreadable("channel id is not text")
    actions = body.get("actions")
    # Bolt routes on actions[0]["action_id"] (slack_bolt/listener_matcher/builtins.py).
    if not isinstance(actions, list) or not actions:
        raise unreadable("actions is not a non-empty list")
    action = actions[0]
    if not isinstance(action, dict) or not isinstance(action.get("action_id"), str):
        raise unreadable("the action has no action_id")
    value = action.get("value")
    if value is not None and not isinstance(value, str):
        raise unreadable(f"the action value is a {type(value).__name__}")
    return BlockAction(
        action_id=action["action_id"], value=value, user_id=user_id, channel_id=channel_id or None
    )


def _view_submission(body: Mapping[str, Any]) -> ViewSubmission:
    view = body.get("view")
    # Bolt reads view["callback_id"] to route and view["type"] for workflow steps
    # (slack_bolt/request/payload_utils.py is_view_submission, is_workflow_step_save).
    if not isinstance(view, dict) or not all(
        isinstance(view.get(name), str) for name in ("callback_id", "type")
    ):
        raise Unreadable("view_submission", "view is not an object with a callback_id and type")
    callback_id = view["callback_id"]

    def unreadable(reason: str) -> Unreadable:
        return Unreadable("view_submission", reason, callback_id=callback_id)

    user_id = _user_id(body)
    if user_id is None:
        raise unreadable("no user id")
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(values, dict):
        raise unreadable("view.state.values is not an object")
    for block in values.values():
        if not isinstance(block, dict) or not all(isinstance(a, dict) for a in block.values()):
            raise unreadable("a block in view.state.values is not an object of objects")
    if not isinstance(view.get("private_metadata", ""), str):
        raise unreadable("view.private_metadata is not text")
    return ViewSubmission(callback_id=callback_id, user_id=user_id, view=view)


def _home_opened(event: Mapping[str, Any]) -> HomeOpened:
    user, tab = event.get("user"), event.get("tab", "home")
    if not isinstance(user, str) or not user:
        raise Unreadable("app_home_opened", "no user id")
    if not isinstance(tab, str):
        raise Unreadable("app_home_opened", "tab is not text")
    return HomeOpened(user_id=user, tab=tab)


def _revoked(event: Mapping[str, Any]) -> Revoked:
    """docs.slack.dev/reference/events/tokens_revoked: "tokens": {"oauth": [user ids],
    "bot": [bot user ids]}; app_uninstalled carries nothing more than the workspace."""
    if event.get("type") == "app_uninstalled":
        return Revoked(everything=True, bot=True)
    tokens = event.get("tokens")
    if not isinstance(tokens, dict):
        raise Unreadable("tokens_revoked", "tokens is not an object")
    users, bots = tokens.get("oauth") or [], tokens.get("bot") or []
    if not isinstance(users, list) or not isinstance(bots, list):
        raise Unreadable("tokens_revoked", "tokens.oauth or tokens.bot is not a list")
    return Revoked(
        everything=False, bot=bool(bots), user_ids=tuple(u for u in users if isinstance(u, str))
    )
