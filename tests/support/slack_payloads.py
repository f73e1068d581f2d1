"""Requests built the way Slack sends them: signed over HTTP, or as Socket Mode envelopes."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.ids import ActionId, BlockId
from tests.fakes.slack_socket import Ack, FakeSocketMode

SIGNING_SECRET = "test-signing-secret"
TEAM = {"id": "T0001", "domain": "trainbot-test"}


def sign(
    body: bytes, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + stamp.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


class SlackSender:
    """Posts to the bot's /slack/events like Slack does, and times each answer."""

    def __init__(self, base_url: str, secret: str = SIGNING_SECRET) -> None:
        self.url = base_url.rstrip("/") + "/slack/events"
        self.secret = secret
        self.client = httpx.Client(timeout=10)
        self.ack_seconds: list[float] = []
        self._trigger = 0
        # Slack's trigger ids are unique and single-use (the fake refuses a reused one), also
        # across the several senders a test may point at several web processes.
        self._trigger_prefix = secrets.token_hex(3)

    def post(
        self,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> httpx.Response:
        all_headers = {
            "Content-Type": content_type,
            **sign(body, secret=secret or self.secret, timestamp=timestamp),
        }
        all_headers.update(headers or {})
        started = time.monotonic()
        response = self.client.post(self.url, content=body, headers=all_headers)
        self.ack_seconds.append(time.monotonic() - started)
        return response

    def command(
        self, text: str = "", *, user: str = "U1", channel: str = "C1", **extra: Any
    ) -> httpx.Response:
        self._trigger += 1
        form = slash_command(
            text,
            user=user,
            channel=channel,
            trigger_id=f"trigger-{self._trigger_prefix}-{self._trigger}",
            **extra,
        )
        return self.post(urlencode(form).encode(), "application/x-www-form-urlencoded")

    def interaction(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return self.post(body, "application/x-www-form-urlencoded", headers=headers)

    def event(self, event: dict[str, Any], event_id: str = "Ev1") -> httpx.Response:
        return self.post(json.dumps(event_callback(event, event_id)).encode(), "application/json")


class SocketSender:
    """Delivers the same payloads over Socket Mode, and waits for each ack."""

    def __init__(self, socket: FakeSocketMode) -> None:
        self.socket = socket
        self._trigger = 0

    def command(
        self, text: str = "", *, user: str = "U1", channel: str = "C1", **extra: Any
    ) -> Ack:
        self._trigger += 1
        payload = slash_command(
            text, user=user, channel=channel, trigger_id=f"socket-trigger-{self._trigger}", **extra
        )
        return self.socket.send("slash_commands", payload, accepts_response_payload=True)

    def interaction(self, payload: dict[str, Any]) -> Ack:
        # Slack waits for an answer to these only; a button click is just acknowledged.
        answers = payload["type"] in {"view_submission", "block_suggestion"}
        return self.socket.send("interactive", payload, accepts_response_payload=answers)

    def event(self, event: dict[str, Any], event_id: str = "Ev1") -> Ack:
        body = event_callback(event, event_id)
        return self.socket.send("events_api", body, accepts_response_payload=False)


def slash_command(
    text: str = "", *, user: str = "U1", channel: str = "C1", trigger_id: str, **extra: Any
) -> dict[str, str]:
    """A /train invocation's fields: a form over HTTP, the payload over Socket Mode."""
    return {
        "token": "legacy-unused",
        "team_id": TEAM["id"],
        "team_domain": TEAM["domain"],
        "channel_id": channel,
        "channel_name": "ml",
        "user_id": user,
        "user_name": user.lower(),
        "command": "/train",
        "text": text,
        "api_app_id": "A0001",
        "response_url": "https://hooks.slack.com/commands/T0001/1/x",
        "trigger_id": trigger_id,
        **extra,
    }


def event_callback(event: dict[str, Any], event_id: str = "Ev1") -> dict[str, Any]:
    return {
        "token": "legacy-unused",
        "team_id": TEAM["id"],
        "api_app_id": "A0001",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "event": event,
    }


def view_submission(
    view: dict[str, Any],
    values: dict[str, dict[str, Any]],
    *,
    user: str = "U1",
    view_id: str = "V0001",
) -> dict[str, Any]:
    """The payload for submitting `view` (as the bot opened it) with `values` filled in."""
    return {
        "type": "view_submission",
        "team": TEAM,
        "user": {"id": user, "username": user.lower(), "team_id": TEAM["id"]},
        "api_app_id": "A0001",
        "trigger_id": "trigger-submit",
        "view": {
            **view,
            "id": view_id,
            "team_id": TEAM["id"],
            "hash": "1700000000.abcdef",
            "state": {"values": values},
        },
    }


def block_action(
    action_id: str, value: str, *, user: str = "U1", channel: str = "C1", message_ts: str = "1.0"
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": TEAM,
        "user": {"id": user, "username": user.lower(), "team_id": TEAM["id"]},
        "api_app_id": "A0001",
        "trigger_id": "trigger-action",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "channel": {"id": channel, "name": "ml"},
        "message": {"ts": message_ts, "text": "card"},
        "response_url": "https://hooks.slack.com/actions/T0001/1/x",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "job_card_actions",
                "value": value,
                "action_ts": str(time.time()),
            }
        ],
    }


def text_value(value: str) -> dict[str, Any]:
    return {"type": "plain_text_input", "value": value}


def select_value(value: str | None) -> dict[str, Any]:
    option = {"text": {"type": "plain_text", "text": value}, "value": value} if value else None
    return {"type": "static_select", "selected_option": option}


def url_value(value: str) -> dict[str, Any]:
    return {"type": "url_text_input", "value": value}


def file_value(files: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "file_input", "files": files}


def train_form(**fields: Any) -> dict[str, dict[str, Any]]:
    """The train modal's state values; only the fields given are filled in, as Slack sends them."""
    kinds: dict[BlockId, tuple[ActionId, Callable[[Any], dict[str, Any]]]] = {
        BlockId.NAME: (ActionId.NAME, text_value),
        BlockId.GOAL: (ActionId.GOAL, text_value),
        BlockId.DATASET: (ActionId.DATASET, select_value),
        BlockId.DATASET_URL: (ActionId.DATASET_URL, url_value),
        BlockId.DATASET_FILE: (ActionId.DATASET_FILE, file_value),
        BlockId.TARGET: (ActionId.TARGET, text_value),
        BlockId.RESOURCES: (ActionId.RESOURCES, text_value),
        BlockId.TASK: (ActionId.TASK, select_value),
        BlockId.TTL: (ActionId.TTL, select_value),
        BlockId.BUDGET: (ActionId.BUDGET, select_value),
    }
    values: dict[str, dict[str, Any]] = {}
    for block, (action, make) in kinds.items():
        given = fields.get(block.value)
        empty: Any = [] if block == BlockId.DATASET_FILE else (None if make is select_value else "")
        values[block.value] = {action.value: make(given if given is not None else empty)}
    return values
