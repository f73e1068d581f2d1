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
# A command's output in `job_events` (pipeline/command_log.py): its first lines, stored as
# they come so `trainbot logs` and the console show progress early, and its last lines,
# stored when it ends (a failure's log tail is the real end). Lines between stay in the
# job's log file only, and one note says how many. 200 + 200 rows: a whole ordinary run,
# and of a noisy one what a person reads, whatever the script prints.
LOG_HEAD_LINES = 200
LOG_TAIL_LINES = 200
# Characters of a line a stored event keeps (the log file has the whole line).
LOG_LINE_CHARS = 2000
# Bytes of a command's output its log file keeps. 50 MB is about 500,000 lines of ordinary
# training output, far past any log worth reading, yet a script printing in a loop for the
# whole training timeout cannot fill the service's disk: past it, one line says so.
LOG_FILE_MAX_BYTES = 50 * 1024 * 1024
# Seconds: an app that lived less would be gone before anyone could open it.
MIN_APP_LIFETIME = 30


def capped_lifetime(seconds: int, max_lifetime: int | None) -> int:
    """`seconds`, or the sandbox provider's longest lifetime when that is shorter."""
    return seconds if max_lifetime is None else min(seconds, max_lifetime)
