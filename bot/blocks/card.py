"""The one status card per job, edited in place as the job moves."""

from __future__ import annotations

from typing import Any

from bot.blocks.base import Message, button, confirm, context, header, make_message, section
from bot.blocks.status import emoji, label, model_name, reason, stage_title
from bot.ids import METADATA_EVENT_TYPE, ActionId, BlockId
from bot.snapshot import STAGES, JobSnapshot
from bot.text import (
    code,
    escape,
    format_duration,
    format_metric,
    safe_url,
    slack_date,
    truncate,
    user_ref,
)
from pipeline.budget import format_budget
from storage.states import ACTIVE, JobStatus

STAGE_MARK = {"done": "✓", "running": "🔄", "failed": "✗"}
PENDING_MARK = "◻"


def _checklist(snap: JobSnapshot) -> str:
    lines = []
    for stage, title in STAGES:
        state = snap.stage_states.get(stage, "pending")
        line = f"{STAGE_MARK.get(state, PENDING_MARK)} *{title}*"
        if stage == snap.stage and snap.note and state in ("running", "failed"):
            line += f" — {escape(snap.note, 300)}"
        lines.append(line)
    return "\n".join(lines)


def _place(ahead: int | None) -> str:
    """Where a queued job stands: jobs over a limit wait, and people want to know for what."""
    if ahead is None:
        return "a worker is starting it."
    if ahead == 0:
        return "next in line, waiting for a free worker."
    return f"{ahead} ahead of it in the queue."


def _summary(snap: JobSnapshot) -> str:
    """The card's sentence about where the job stands."""
    status = snap.status
    if status == JobStatus.QUEUED:
        text = "*Queued* — " + _place(snap.queue_ahead)
        if snap.wait_reason and snap.queue_ahead is not None:
            text += f"\nWaiting because {escape(snap.wait_reason, 300)}."
        return text
    if status == JobStatus.LIVE:
        metric = format_metric(snap.metrics)
        text = "*Live*" + (f" — {escape(metric, 200)}" if metric else "")
        if snap.expires_at is not None:
            text += f"\nThe app stays up until {slack_date(snap.expires_at)}."
        return text
    if status == JobStatus.FAILED:
        return f"*Failed* during *{stage_title(snap.stage)}*: {reason(snap)}"
    if status == JobStatus.CANCELLED:
        was_live = snap.stage_states.get("deploy") == "done"
        return "*Cancelled* — " + (
            "the live app was stopped." if was_live else "nothing more will run."
        )
    if status == JobStatus.EXPIRED:
        return "*Expired* — the live app reached the end of its lifetime and was shut down."
    return f"*{label(snap)}*"


def _details(snap: JobSnapshot) -> list[str]:
    data = f"Data: {escape(snap.dataset or 'unknown', 300)}"
    if snap.target:
        data += f" → {code(snap.target)}"
    elapsed = (
        "Not started yet"
        if snap.started_at is None
        else f"Elapsed {format_duration(snap.elapsed_seconds)}"
    )
    job = f"Job {code(snap.short_id, 40)}"
    if snap.attempt > 1:
        job += f" · attempt {snap.attempt}"
    details = [f"Started by {user_ref(snap.requested_by)}", data, elapsed, job]
    if snap.budget_seconds is not None:
        details.append(f"Training budget: {format_budget(snap.budget_seconds)}")
    if snap.warnings:
        details.append(f"⚠️ {snap.warnings} warning{'s' if snap.warnings != 1 else ''} in thread")
    return details


def _card_buttons(snap: JobSnapshot) -> list[dict[str, Any]]:
    name = truncate(snap.model_name or "this model", 60)
    if snap.status in ACTIVE:
        return [
            button(
                "Cancel",
                ActionId.CANCEL_JOB,
                value=snap.job_id,
                style="danger",
                confirm=confirm(
                    "Cancel this job?",
                    f"Training of {name} stops and nothing is deployed.",
                    "Cancel job",
                    "Keep going",
                ),
            )
        ]
    if snap.status == JobStatus.LIVE:
        buttons = []
        url = safe_url(snap.url)
        if url:
            buttons.append(button("Open live app", ActionId.OPEN_APP, url=url, style="primary"))
        buttons.append(
            button(
                "Stop app",
                ActionId.CANCEL_JOB,
                value=snap.job_id,
                confirm=confirm(
                    "Stop the live app?",
                    f"The app for {name} goes offline for everyone.",
                    "Stop app",
                    "Keep it running",
                ),
            )
        )
        return buttons
    if snap.status == JobStatus.FAILED:
        return [button("Retry", ActionId.RETRY_JOB, value=snap.job_id, style="primary")]
    if snap.status in (JobStatus.CANCELLED, JobStatus.EXPIRED):
        return [button("Train again", ActionId.RETRY_JOB, value=snap.job_id, style="primary")]
    return []


def job_card(snap: JobSnapshot) -> Message:
    """The one status card per job, updated in place as the job moves."""
    blocks = [
        header(f"{emoji(snap)} {snap.model_name or 'model'}"),
        section(_summary(snap)),
        section(_checklist(snap)),
        context(*_details(snap)),
    ]
    buttons = _card_buttons(snap)
    if buttons:
        blocks.append({"type": "actions", "block_id": BlockId.CARD_ACTIONS, "elements": buttons})
    text = f"{emoji(snap)} {model_name(snap)}: {label(snap)}"
    if snap.status == JobStatus.LIVE and safe_url(snap.url):
        text += f" — {snap.url}"
    return make_message(text, blocks)


def card_metadata(snap: JobSnapshot) -> dict[str, Any]:
    """Message metadata for the card, so the card can be found and read back from Slack."""
    return {
        "event_type": METADATA_EVENT_TYPE,
        "event_payload": {
            "job_id": snap.job_id,
            "status": snap.status,
            "stage": snap.stage or "",
            "deployment_url": snap.url or "",
        },
    }
