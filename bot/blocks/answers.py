"""Answers to `/train` subcommands, shown only to the person who asked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.blocks.base import MAX_MESSAGE_BLOCKS, MAX_SECTION, Message, context, make_message, section
from bot.blocks.status import emoji, label, model_name, reason, stage_title
from bot.blocks.training import full_training_blocks
from bot.ids import TRAIN_COMMAND
from bot.snapshot import JobSnapshot
from bot.text import (
    channel_ref,
    code,
    code_block,
    escape,
    format_duration,
    format_metric,
    link,
    slack_date,
)
from pipeline.budget import format_budget
from storage.states import ACTIVE, JobStatus

HELP_LINES = (
    (TRAIN_COMMAND, "open the form to train a model"),
    (f"{TRAIN_COMMAND} help", "show this help"),
    (f"{TRAIN_COMMAND} status [ID]", "where a job stands (your latest job if no ID)"),
    (f"{TRAIN_COMMAND} list", "recent jobs in this channel"),
    (f"{TRAIN_COMMAND} cancel ID", "stop a running job or a live app"),
    (f"{TRAIN_COMMAND} retry ID", "train a failed, cancelled or expired job again"),
    (f"{TRAIN_COMMAND} logs ID", "the end of a job's training log"),
    (f"{TRAIN_COMMAND} extend ID [hours]", "keep a live app up longer (1 hour if not said)"),
)


def help_message() -> Message:
    lines = "\n".join(f"`{command}` — {what}" for command, what in HELP_LINES)
    blocks = [
        section("*TrainBot* trains a model from your data and gives you a live app to try it."),
        section(lines),
        context("IDs are the short job ids shown on each job card and in `/train list`."),
    ]
    return make_message(f"TrainBot commands: {', '.join(c for c, _ in HELP_LINES)}", blocks)


def _headline(snap: JobSnapshot) -> str:
    return f"{emoji(snap)} *{model_name(snap, 100)}* {code(snap.short_id, 40)} — {label(snap)}"


def status_message(snap: JobSnapshot) -> Message:
    facts = []
    if snap.status in ACTIVE or snap.status == JobStatus.FAILED:
        facts.append(f"*Stage:* {stage_title(snap.stage) if snap.stage else 'not started'}")
    facts.append(
        f"*Elapsed:* {format_duration(snap.elapsed_seconds)}"
        if snap.started_at
        else "*Elapsed:* not started yet"
    )
    if snap.note and snap.status in ACTIVE:
        facts.append(f"*Latest:* {escape(snap.note, 300)}")
    if snap.budget_seconds is not None:
        facts.append(f"*Training budget:* {format_budget(snap.budget_seconds)}")
    metric = format_metric(snap.metrics)
    if metric:
        facts.append(f"*Metric:* {escape(metric, 200)}")
    if snap.status == JobStatus.LIVE:
        app_link = link(snap.url, snap.url or "")
        if app_link:
            facts.append(f"*Live app:* {app_link}")
        if snap.expires_at is not None:
            facts.append(f"*Stays up until:* {slack_date(snap.expires_at)}")
    if snap.status == JobStatus.FAILED:
        facts.append(f"*Reason:* {reason(snap, 1500)}")
    blocks = [section(_headline(snap)), section("\n".join(facts))]
    return make_message(f"{emoji(snap)} {model_name(snap)}: {label(snap)}", blocks)


def _job_line(snap: JobSnapshot) -> str:
    line = f"{code(snap.short_id, 40)} {emoji(snap)} *{model_name(snap, 100)}* — {label(snap)}"
    if snap.status == JobStatus.LIVE:
        app_link = link(snap.url, "open app")
        if app_link:
            line += f" · {app_link}"
    return line


def _packed_sections(lines: Sequence[str], room: int) -> tuple[list[dict[str, Any]], int]:
    """Lines joined into as few sections as fit Slack's section text limit, at most `room`
    sections; returns them and how many lines they hold."""
    chunks: list[list[str]] = []
    size = 0
    for count, line in enumerate(lines):
        if not chunks or size + len(line) + 1 > MAX_SECTION:
            if len(chunks) == room:
                return [section("\n".join(c)) for c in chunks], count
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line) + 1
    return [section("\n".join(c)) for c in chunks], len(lines)


def list_message(
    snaps: Sequence[JobSnapshot], channel_id: str, *, total: int | None = None
) -> Message:
    """Recent jobs in a channel, newest first as given; `total` counts those not given too."""
    where = channel_ref(channel_id)
    if not snaps:
        text = f"No jobs in {where} yet. Start one with `{TRAIN_COMMAND}`."
        return make_message(text, [section(text)])
    total = max(total or 0, len(snaps))
    # Room for the title and the line about older jobs.
    sections, shown = _packed_sections([_job_line(s) for s in snaps], MAX_MESSAGE_BLOCKS - 2)
    blocks = [section(f"*Recent jobs in {where}*"), *sections]
    if total > shown:
        blocks.append(context(f"…and {total - shown} older jobs not shown."))
    return make_message(f"Recent jobs in {where}: {total}", blocks)


def logs_message(snap: JobSnapshot, lines: Sequence[str], total: int) -> Message:
    """The end of a job's log, as much as fits in one section, then what training tried
    and learned when it said so."""
    title = f"📜 Log of *{model_name(snap, 100)}* {code(snap.short_id, 40)}"
    report = full_training_blocks(snap.report) if snap.report is not None else []
    if not lines:
        text = f"{title}: no log lines yet."
        return make_message(text, [section(text), *report])
    block, shown = code_block(lines, MAX_SECTION)
    head = f"{title} — showing the last {shown} of {max(total, shown)} lines"
    return make_message(head, [section(head), section(block), *report])


def error_message(text: str) -> Message:
    body = f"❗ {escape(text, 2900)}"
    return make_message(body, [section(body)])
