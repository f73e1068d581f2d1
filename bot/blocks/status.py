"""How a job's state reads on every surface: its emoji, label, stage title and reason."""

from __future__ import annotations

from bot.snapshot import STAGE_TITLES, JobSnapshot
from bot.text import escape
from storage.states import RUNNING_STAGES, JobStatus

STATUS_EMOJI: dict[str, str] = {
    JobStatus.QUEUED: "⏳",
    **{status: "🔄" for status in RUNNING_STAGES},
    JobStatus.LIVE: "✅",
    JobStatus.FAILED: "❌",
    JobStatus.CANCELLED: "🚫",
    JobStatus.EXPIRED: "⌛",
}
STATUS_LABEL: dict[str, str] = {
    JobStatus.QUEUED: "Queued",
    JobStatus.FETCHING_RESOURCES: "Reading reference resources",
    JobStatus.LOADING_DATA: "Loading the data set",
    JobStatus.GENERATING_CODE: "Writing the training code",
    JobStatus.TRAINING: "Training",
    JobStatus.DEPLOYING: "Starting the live app",
    JobStatus.LIVE: "Live",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELLED: "Cancelled",
    JobStatus.EXPIRED: "Expired",
}


def emoji(snap: JobSnapshot) -> str:
    return STATUS_EMOJI.get(snap.status, "❔")


def label(snap: JobSnapshot) -> str:
    return STATUS_LABEL.get(snap.status, snap.status.replace("_", " ").capitalize())


def stage_title(stage: str | None) -> str:
    return STAGE_TITLES.get(stage or "", (stage or "the job").replace("_", " "))


def model_name(snap: JobSnapshot, limit: int = 120) -> str:
    return escape(snap.model_name or "model", limit)


def reason(snap: JobSnapshot, limit: int = 1500) -> str:
    return escape(snap.error, limit) if snap.error else "it stopped without saying why."
