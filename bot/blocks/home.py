"""The App Home tab."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.blocks.base import MAX_VIEW_BLOCKS, button, context, divider, header, section
from bot.blocks.status import emoji, label, model_name, reason
from bot.ids import TRAIN_COMMAND, open_app_action_id
from bot.snapshot import JobSnapshot
from bot.text import code, escape, format_metric, safe_url
from storage.states import JobStatus


def _home_job(snap: JobSnapshot, position: int) -> dict[str, Any]:
    lines = [f"{emoji(snap)} *{model_name(snap, 100)}* — {label(snap)} · {code(snap.short_id, 40)}"]
    metric = format_metric(snap.metrics)
    if metric:
        lines.append(escape(metric, 200))
    if snap.status == JobStatus.FAILED:
        lines.append(reason(snap, 300))
    url = safe_url(snap.url)
    accessory = None
    if snap.status == JobStatus.LIVE and url:
        # Action ids must be unique within a view, so each job's button gets its position.
        action_id = open_app_action_id(position)
        accessory = button("Open live app", action_id, value=snap.job_id, url=url, style="primary")
    return section("\n".join(lines), accessory=accessory)


def home_view(snaps: Sequence[JobSnapshot], *, total: int | None = None) -> dict[str, Any]:
    """The App Home tab: how to start, then the user's recent jobs (newest first as given;
    `total` counts those not given too)."""
    blocks: list[dict[str, Any]] = [
        header("TrainBot"),
        section(
            f"Train a model from any channel: type `{TRAIN_COMMAND}` and fill in the form. "
            f"`{TRAIN_COMMAND} help` lists every command."
        ),
        divider(),
        section("*Your recent jobs*"),
    ]
    if not snaps:
        blocks.append(context(f"No jobs yet. Start one with `{TRAIN_COMMAND}`."))
    total = max(total or 0, len(snaps))
    shown = snaps[: MAX_VIEW_BLOCKS - len(blocks) - 1]  # room for the line about older jobs
    blocks += [_home_job(s, i) for i, s in enumerate(shown)]
    if total > len(shown):
        blocks.append(context(f"…and {total - len(shown)} older jobs not shown."))
    return {"type": "home", "blocks": blocks}
