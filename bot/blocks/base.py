"""The pieces every builder is made of, each keeping to Slack's limits by truncating."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.text import clip_mrkdwn, truncate

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_BUTTON = 75
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK = 3000
MAX_OPTIONS = 100


@dataclass(frozen=True)
class Message:
    """A message body: `text` is the notification fallback, `blocks` what Slack shows."""

    text: str
    blocks: list[dict[str, Any]]

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for chat_postMessage / chat_update / respond."""
        return {"text": self.text, "blocks": self.blocks}


def plain(text: str, limit: int = MAX_SECTION) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text, limit) or " ", "emoji": True}


def mrkdwn(text: str, limit: int = MAX_SECTION) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip_mrkdwn(text, limit) or " "}


def section(text: str, *, accessory: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": mrkdwn(text)}
    if accessory is not None:
        block["accessory"] = accessory
    return block


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": plain(text, MAX_HEADER)}


def context(*texts: str) -> dict[str, Any]:
    elements = [mrkdwn(t) for t in texts if t][:MAX_CONTEXT_ELEMENTS]
    return {"type": "context", "elements": elements or [mrkdwn(" ")]}


def divider() -> dict[str, Any]:
    return {"type": "divider"}


def confirm(title: str, text: str, confirm: str, deny: str) -> dict[str, Any]:
    return {
        "title": plain(title, 100),
        "text": plain(text, 300),
        "confirm": plain(confirm, 30),
        "deny": plain(deny, 30),
        "style": "danger",
    }


def button(
    text: str,
    action_id: str,
    *,
    value: str | None = None,
    url: str | None = None,
    style: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "button",
        "text": plain(text, MAX_BUTTON),
        "action_id": action_id,
    }
    if value is not None:
        element["value"] = value[:2000]
    if url is not None:
        element["url"] = url
    if style is not None:
        element["style"] = style
    if confirm is not None:
        element["confirm"] = confirm
    return element


def option(value: str, label: str) -> dict[str, Any]:
    return {"text": plain(label, 75), "value": value[:150]}


def make_message(text: str, blocks: list[dict[str, Any]]) -> Message:
    return Message(text=clip_mrkdwn(text, MAX_FALLBACK), blocks=blocks[:MAX_MESSAGE_BLOCKS])
