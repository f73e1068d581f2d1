"""Replies in a job's thread: finished stages, notes, warnings, the failure, the live app."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.blocks.base import (
    MAX_MESSAGE_BLOCKS,
    MAX_SECTION,
    Message,
    button,
    context,
    make_message,
    section,
)
from bot.blocks.status import model_name, reason, stage_title
from bot.blocks.training import training_blocks
from bot.ids import TRAIN_COMMAND, ActionId, BlockId, open_app_action_id
from bot.snapshot import JobSnapshot
from bot.text import code, code_block, escape, format_metric, link, safe_url, slack_date, user_ref
from pipeline.limits import FAILURE_LOG_LINES
from pipeline.training_report import TrainingReport
from storage.models import SHORT_ID_LENGTH
from storage.states import JobStatus

# Outcomes one roll-up message lists (a header and a section each, within Slack's 50 blocks).
MAX_ROLLUP = 20


def stage_reply(stage: str, title: str, summary: str) -> Message:
    """A finished stage: "✓ Data set — built-in iris (147 rows): …"."""
    text = f"✓ *{escape(title or stage_title(stage), 100)}* — {escape(summary, 2500)}"
    return make_message(text, [section(text)])


def note_reply(message: str) -> Message:
    """A plain update in the thread, e.g. "the live app was stopped: its lifetime ran out"."""
    text = escape(message, 2900)
    return make_message(text, [section(text)])


def cancelled_reply(user_id: str) -> Message:
    """Who cancelled; "" when nobody is known (a cancel from somewhere without a user)."""
    text = f"🚫 Cancelled by {user_ref(user_id)}." if user_id else "🚫 Cancelled."
    return make_message(text, [section(text)])


def warning_reply(message: str) -> Message:
    text = f"⚠️ {escape(message, 2900)}"
    return make_message(text, [section(text)])


def failure_reply(
    snap: JobSnapshot,
    log_tail: str,
    *,
    steps: Sequence[str] = (),
    report: TrainingReport | None = None,
) -> Message:
    """Why the job failed, the end of its log, and what to do next; `steps` and `report`:
    what the thread did not get a reply of its own for while the channel was crowded (see
    `steps_block`; bot.blocks.training)."""
    head = (
        f"❌ *{model_name(snap)}* failed during *{stage_title(snap.stage)}*: {reason(snap, 2500)}"
    )
    blocks = [section(head)]
    lines = log_tail.splitlines()[-FAILURE_LOG_LINES:]
    if lines:
        block, _ = code_block(lines, MAX_SECTION)
        blocks.append(section(block))
    short = snap.short_id
    blocks.append(
        context(
            f"Full log: {code(f'{TRAIN_COMMAND} logs {short}', 80)}",
            f"Try again: {code(f'{TRAIN_COMMAND} retry {short}', 80)}",
        )
    )
    blocks += _held_back(steps, report)
    return make_message(head, blocks)


def live_reply(
    snap: JobSnapshot, *, steps: Sequence[str] = (), report: TrainingReport | None = None
) -> Message:
    """The app is up: the score, where it lives, until when, how to call it, and the button
    that opens it; `steps` and `report` as in `failure_reply`."""
    metrics = snap.metrics or {}
    app_link = link(snap.url, "Open the live app")
    head = f"✅ *{model_name(snap)}* is live" + (f": {app_link}" if app_link else ".")
    facts = []
    metric = format_metric(metrics)
    if metric:
        facts.append(f"*Score:* {escape(metric, 200)} on held-out rows")
    if metrics.get("model"):
        facts.append(f"*Model:* {escape(str(metrics['model']), 200)}")
    if metrics.get("n_train") is not None:
        facts.append(
            f"*Rows:* {escape(str(metrics['n_train']), 20)} to train, "
            f"{escape(str(metrics.get('n_test', '?')), 20)} to test"
        )
    if snap.expires_at is not None:
        facts.append(f"*Stays up until:* {slack_date(snap.expires_at)}")
    blocks = [section("\n".join([head, *facts]))]
    url = safe_url(snap.url)
    if url:
        base = url.rstrip("/")
        curl = (
            f"curl {base}/schema\n"
            "curl -X POST -H 'Content-Type: application/json' \\\n"
            '  -d \'{"rows": [{"feature": "value"}]}\' \\\n'
            f"  {base}/predict"
        )
        block, _ = code_block(curl.splitlines(), MAX_SECTION)
        blocks.append(section("Try it from a terminal (`/schema` lists the features):\n" + block))
        blocks.append(
            {
                "type": "actions",
                "block_id": BlockId.LIVE_ACTIONS,
                "elements": [button("Open live app", ActionId.OPEN_APP, url=url, style="primary")],
            }
        )
    blocks += _held_back(steps, report)
    text = f"✅ {model_name(snap)} is live" + (f": {url}" if url else "")
    return make_message(text, blocks)


def steps_block(steps: Sequence[str]) -> dict[str, Any]:
    """The finished stages and warnings a busy channel's thread got no reply for: the card
    showed them as they happened, and they are kept here for the record."""
    return context(escape("\n".join(steps), 2900))


def _held_back(steps: Sequence[str], report: TrainingReport | None) -> list[dict[str, Any]]:
    held = training_blocks(report) if report is not None else []
    return held + ([steps_block(steps)] if steps else [])


def outcomes_rollup(snaps: Sequence[JobSnapshot]) -> Message | None:
    """Several jobs of one channel ended at once: one message with each one's outcome and,
    for a live app, its button, so none waits behind the others (Slack takes about one
    message a second a channel). Each job's thread gets its full reply after. Jobs stopped
    or cancelled since are left to their thread; None when none is left."""
    ended = (JobStatus.LIVE.value, JobStatus.FAILED.value)
    shown = [snap for snap in snaps if snap.status in ended][:MAX_ROLLUP]
    if not shown:
        return None
    live = sum(1 for snap in shown if snap.status == JobStatus.LIVE.value)
    failed = len(shown) - live
    parts = [f"{live} live" if live else "", f"{failed} failed" if failed else ""]
    head = f"*{len(shown)} jobs just finished:* " + ", ".join(p for p in parts if p)
    blocks: list[dict[str, Any]] = [section(head)]
    for position, snap in enumerate(shown):
        url = safe_url(snap.url) if snap.status == JobStatus.LIVE.value else None
        if url:
            line = f"✅ *{model_name(snap)}* is live"
            accessory = button(
                "Open live app", open_app_action_id(position), url=url, style="primary"
            )
            blocks.append(section(f"{line} (job {code(snap.short_id, 20)})", accessory=accessory))
        else:
            line = f"❌ *{model_name(snap)}* failed during *{stage_title(snap.stage)}*"
            blocks.append(section(f"{line}: {reason(snap, 500)} (job {code(snap.short_id, 20)})"))
    blocks.append(context("Details and charts follow in each job's thread."))
    text = head.replace("*", "") + ": " + ", ".join(model_name(s) for s in shown)
    return make_message(text, blocks[:MAX_MESSAGE_BLOCKS])


def expiry_notice(job_id: str, expires_at: datetime, hours: float) -> Message:
    """The app stops soon: when, and a button that keeps it up `hours` longer."""
    short = job_id[:SHORT_ID_LENGTH]
    text = f"⏳ The live app of job {short} stops {slack_date(expires_at)}."
    label = f"Extend by {_hours(hours)}"
    actions = {
        "type": "actions",
        "block_id": BlockId.EXPIRY_ACTIONS,
        "elements": [button(label, ActionId.EXTEND_APP.value, value=job_id, style="primary")],
    }
    hint = f"Or `{TRAIN_COMMAND} extend {short} HOURS`, within the sandbox's limit."
    return make_message(text, [section(text), actions, context(hint)])


def extended_reply(
    user_id: str, job_id: str, expires_at: datetime, *, cut_short: str = ""
) -> Message:
    """Someone kept the app up longer; `cut_short` names the provider that stops it sooner."""
    short = job_id[:SHORT_ID_LENGTH]
    until = slack_date(expires_at)
    text = f"⏱️ {user_ref(user_id)} extended the app of job {short}: it stays up until {until}"
    if cut_short:
        text += f", sooner than asked: the {escape(cut_short, 40)} sandbox stops it then"
    return make_message(f"{text}.", [section(f"{text}.")])


def _hours(hours: float) -> str:
    if hours >= 1:
        shown = f"{hours:g}"
        return f"{shown} hour" if shown == "1" else f"{shown} hours"
    return f"{round(hours * 60)} minutes"
