"""Small text helpers for Slack messages: escaping, safe truncation, numbers, dates, links."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

ELLIPSIS = "…"
MAX_URL = 3000
MAX_LOG_LINE = 400  # one runaway line must not crowd out the rest of a log excerpt

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_USER_ID = re.compile(r"^[UW][A-Z0-9]+$")
_CHANNEL_ID = re.compile(r"^[CDG][A-Z0-9]{2,}$")
_URL_BREAKERS = re.compile(r"[\s<>|\"`]")  # would end or corrupt a mrkdwn <url|label> link
_FENCE = "```"


def truncate(text: str, limit: int) -> str:
    """Plain text of at most `limit` characters, with an ellipsis where it was cut."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return text[: max(limit, 0)]
    return text[: limit - 1].rstrip() + ELLIPSIS


def escape(text: str, limit: int | None = None) -> str:
    """User text made safe for mrkdwn (& < > as entities), at most `limit` characters escaped.

    The cut happens on the raw text, so an entity is never split in half.
    """
    escaped = "".join(_ESCAPES.get(ch, ch) for ch in text)
    if limit is None or len(escaped) <= limit:
        return escaped
    out: list[str] = []
    size = 0
    for ch in text:
        piece = _ESCAPES.get(ch, ch)
        if size + len(piece) > limit - 1:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out).rstrip() + ELLIPSIS


def code(text: str, limit: int = 100) -> str:
    """User text as an inline code span; backticks inside would end the span early."""
    return f"`{escape(text.replace('`', 'ˋ'), limit)}`"


def clip_mrkdwn(text: str, limit: int) -> str:
    """Composed mrkdwn cut to `limit` characters without leaving a broken entity, link or fence."""
    if len(text) <= limit:
        return text
    budget = limit - len(ELLIPSIS) - len("\n" + _FENCE)
    cut = text[:budget]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    opening = cut.rfind("<")
    if opening > cut.rfind(">"):
        cut = cut[:opening]
    cut = cut.rstrip() + ELLIPSIS
    if cut.count(_FENCE) % 2:
        cut += "\n" + _FENCE
    return cut


def code_block(lines: Sequence[str], budget: int) -> tuple[str, int]:
    """The last lines that fit in a fenced block of at most `budget` characters.

    Returns the block and how many lines it shows; dropped lines are marked with "…" on top.
    """
    frame = len(_FENCE) * 2 + 2
    marker = ELLIPSIS + "\n"
    room = budget - frame - len(marker)
    kept: list[str] = []
    size = 0
    for line in reversed(lines):
        clean = escape(line.replace(_FENCE, "`\u200b``").rstrip(), MAX_LOG_LINE) or " "
        if size + len(clean) + 1 > room:
            break
        kept.append(clean)
        size += len(clean) + 1
    kept.reverse()
    head = marker if len(kept) < len(lines) else ""
    return f"{_FENCE}\n{head}{chr(10).join(kept)}\n{_FENCE}", len(kept)


def format_lifetime(seconds: int) -> str:
    """How long an app stays up, as the form offers it: 15 min, 1 h, 1 h 30 min, 45 s."""
    hours, rest = divmod(max(0, int(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    parts.append(f"{secs} s" if secs else "")
    return " ".join(p for p in parts if p) or "0 s"


def format_duration(seconds: float) -> str:
    """42s, 1m 05s, 2h 03m."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def format_metric(metrics: Mapping[str, Any] | None) -> str | None:
    """Score vs baseline as raw text, e.g. `accuracy 0.967 (baseline 0.333)`; None if unscored."""
    if not metrics:
        return None
    score = _number(metrics.get("score"))
    if score is None:
        return None
    text = f"{metrics.get('metric') or 'score'} {score:.3f}"
    baseline = _number(metrics.get("baseline"))
    if baseline is not None:
        text += f" (baseline {baseline:.3f})"
    return text


def safe_url(url: str | None) -> str | None:
    """The URL if it is a well-formed http(s) link Slack can take in a button or link, else None."""
    if not url or len(url) > MAX_URL or _URL_BREAKERS.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def link(url: str | None, label: str) -> str | None:
    """A mrkdwn link, or None when the URL is not safe to show."""
    good = safe_url(url)
    return f"<{good}|{escape(label, 200)}>" if good else None


def slack_date(moment: datetime) -> str:
    """A date Slack shows in each reader's own time zone; naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    fallback = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


def user_ref(requested_by: str) -> str:
    """Who started a job: a Slack mention, "the CLI", or the escaped name as given."""
    if requested_by == "cli":
        return "the CLI"
    if _USER_ID.match(requested_by):
        return f"<@{requested_by}>"
    return escape(requested_by, 80)


def channel_ref(channel_id: str) -> str:
    return f"<#{channel_id}>" if _CHANNEL_ID.match(channel_id) else "this channel"
