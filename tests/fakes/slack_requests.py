"""Reading a Web API request the way Slack does: the body, the arguments, the payload checks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from tests.fakes.slack_blocks_rules import (
    MAX_MESSAGE_TEXT,
    message_block_errors,
    metadata_errors,
    view_errors,
)


class SlackError(Exception):
    """Answered as {"ok": false, "error": ...}; with reasons it is also a Rejection."""

    def __init__(self, error: str, reasons: Iterable[str] = ()) -> None:
        super().__init__(error)
        self.error = error
        self.reasons = list(reasons)


def parse_params(query: str, body: bytes, content_type: str) -> dict[str, Any]:
    """slack_sdk sends JSON for chat.* and views.*, form-encoded for the rest."""
    params: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise SlackError("invalid_json") from None
        if not isinstance(data, dict):
            raise SlackError("invalid_json")
        params |= data
    elif kind == "application/x-www-form-urlencoded":
        params |= dict(parse_qsl(body.decode(), keep_blank_values=True))
    elif kind == "multipart/form-data":
        params |= multipart(body, content_type)
    return params


def multipart(body: bytes, content_type: str) -> dict[str, Any]:
    """Form fields as str, file parts as bytes."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        payload = payload if isinstance(payload, bytes) else b""
        fields[str(name)] = payload if part.get_filename() else payload.decode()
    return fields


def required(params: dict[str, Any], name: str, error: str) -> str:
    value = params.get(name)
    if not value:
        raise SlackError(error)
    return str(value)


def json_field(value: Any, error: str) -> Any:
    """A field sent form-encoded arrives as a JSON string; sent as JSON it is already parsed."""
    try:
        return json.loads(value) if isinstance(value, str) else value
    except ValueError:
        raise SlackError(error, ["is not valid JSON"]) from None


def message_content(params: dict[str, Any], *, update: bool) -> dict[str, Any]:
    """The text, blocks and metadata a message call sets, checked as Slack checks them."""
    content: dict[str, Any] = {}
    if "text" in params:
        content["text"] = str(params["text"] or "")
        if len(content["text"]) > MAX_MESSAGE_TEXT:
            raise SlackError(
                "msg_too_long", [f"text must be at most {MAX_MESSAGE_TEXT} characters"]
            )
    if "blocks" in params:
        blocks = json_field(params["blocks"], "invalid_blocks_format")
        if not isinstance(blocks, list):
            raise SlackError("invalid_blocks_format", ["blocks must be an array"])
        if reasons := message_block_errors(blocks):
            raise SlackError("invalid_blocks", reasons)
        content["blocks"] = blocks
    if "metadata" in params:
        metadata = json_field(params["metadata"], "invalid_metadata_format")
        if reasons := metadata_errors(metadata, allow_empty=update):
            raise SlackError("invalid_metadata_format", reasons)
        content["metadata"] = metadata
    has_content = content.get("text") or content.get("blocks") or params.get("attachments")
    if not has_content and not (update and content):
        raise SlackError("no_text", ["a message needs text, blocks or attachments"])
    return content


def checked_view(params: dict[str, Any]) -> dict[str, Any]:
    """Slack answers a bad view with invalid_arguments, not invalid_blocks."""
    view = json_field(params.get("view"), "invalid_arguments")
    if reasons := view_errors(view):
        raise SlackError("invalid_arguments", reasons)
    return view
