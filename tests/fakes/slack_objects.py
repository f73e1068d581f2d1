"""The objects the fake Slack answers with, shaped like Slack's (only the fields tests need)."""

from __future__ import annotations

import copy
import mimetypes
import time
from typing import Any
from urllib.parse import quote

WORKSPACE_URL = "https://fake-workspace.slack.com"


def message_object(
    *, ts: str, channel: str, user: str, bot_id: str, thread_ts: str | None, **content: Any
) -> dict[str, Any]:
    """Every key is always present (None when unset), so tests can index without .get()."""
    message = {
        "type": "message",
        "ts": ts,
        "channel": channel,
        "user": user,
        "bot_id": bot_id,
        "text": "",
        "blocks": None,
        "metadata": None,
        "thread_ts": thread_ts or None,
        "files": None,
        "edited": None,
    }
    return message | {key: value for key, value in content.items() if value is not None}


def permalink(message: dict[str, Any]) -> str:
    channel, thread_ts = message["channel"], message["thread_ts"]
    link = f"{WORKSPACE_URL}/archives/{channel}/p{message['ts'].replace('.', '')}"
    return link + (f"?thread_ts={thread_ts}&cid={channel}" if thread_ts else "")


def view_object(
    view: dict[str, Any], *, view_id: str, view_hash: str, team_id: str, bot_id: str
) -> dict[str, Any]:
    defaults = {"private_metadata": "", "callback_id": "", "external_id": ""}
    return (
        defaults
        | copy.deepcopy(view)
        | {
            "id": view_id,
            "team_id": team_id,
            "bot_id": bot_id,
            "state": {"values": {}},
            "hash": view_hash,
            "root_view_id": view_id,
            "previous_view_id": None,
        }
    )


def auth_test_answer(*, team_id: str, user_id: str, bot_id: str) -> dict[str, Any]:
    return {
        "url": f"{WORKSPACE_URL}/",
        "team": "Fake Workspace",
        "user": "trainbot",
        "team_id": team_id,
        "user_id": user_id,
        "bot_id": bot_id,
        "is_enterprise_install": False,
    }


def channel_object(
    channel: str, *, is_member: bool, is_private: bool, is_im: bool, is_archived: bool
) -> dict[str, Any]:
    return {
        "id": channel,
        "name": channel.lower(),
        "is_channel": not is_im,
        "is_group": channel.startswith("G"),
        "is_im": is_im,
        "is_private": is_private or is_im,
        "is_archived": is_archived,
        "is_member": is_member,
    }


def user_object(user_id: str, *, team_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    name = user_id.lower()
    return {
        "id": user_id,
        "team_id": team_id,
        "name": name,
        "real_name": name,
        "tz": "UTC",
        "tz_offset": 0,
        "is_bot": False,
        "deleted": False,
        "profile": {"real_name": name, "display_name": name},
    } | overrides


def file_object(
    *,
    base_url: str,
    file_id: str,
    name: str,
    size: int,
    title: str,
    filetype: str | None,
    user: str,
) -> dict[str, Any]:
    """Its private URLs point at the fake, which serves them only with the bot token."""
    return {
        "id": file_id,
        "name": name,
        "title": title,
        "filetype": filetype or name.rpartition(".")[2].lower() or "binary",
        "mimetype": mimetypes.guess_type(name)[0] or "application/octet-stream",
        "size": size,
        "created": int(time.time()),
        "user": user,
        "url_private": f"{base_url}/files/{file_id}/{quote(name)}",
        "url_private_download": f"{base_url}/files/{file_id}/download/{quote(name)}",
    }
