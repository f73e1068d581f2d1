"""Limits the pipeline owns, in one place, so the bot and the CLI quote the same numbers."""

from __future__ import annotations

# Reference links read per job; more are skipped with a warning (the form refuses them).
MAX_RESOURCES = 5
# Lines of a failed command's output kept as the failure's detail: what the Slack thread and
# `trainbot logs` show under the reason.
FAILURE_LOG_LINES = 25
# What a sandbox keeps of a command's output (both providers): the last lines of each stream,
# at most so many characters of them, and lines cut at a length no log line needs.
OUTPUT_TAIL_LINES = 200
OUTPUT_TAIL_CHARS = 20_000
OUTPUT_MAX_LINE = 64 * 1024
# Seconds: an app that lived less would be gone before anyone could open it.
MIN_APP_LIFETIME = 30


def capped_lifetime(seconds: int, max_lifetime: int | None) -> int:
    """`seconds`, or the sandbox provider's longest lifetime when that is shorter."""
    return seconds if max_lifetime is None else min(seconds, max_lifetime)
