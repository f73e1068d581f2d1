"""Every Block Kit payload TrainBot sends, as pure functions: data in, plain dicts out.

User-provided text (model names, notes, errors, logs) is escaped and every builder keeps to
Slack's limits by truncating, never by raising.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.ids import (
    METADATA_EVENT_TYPE,
    TRAIN_COMMAND,
    ActionId,
    BlockId,
    CallbackId,
    open_app_action_id,
)
from bot.snapshot import STAGE_TITLES, STAGES, JobSnapshot
from bot.text import (
    channel_ref,
    clip_mrkdwn,
    code,
    code_block,
    escape,
    format_duration,
    format_metric,
    link,
    safe_url,
    slack_date,
    truncate,
    user_ref,
)
from storage.states import ACTIVE, RUNNING_STAGES, JobStatus

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_BUTTON = 75
MAX_CONTEXT_ELEMENTS = 10
MAX_FALLBACK = 3000
MAX_OPTIONS = 100
LOG_TAIL_LINES = 25
LIST_MAX_JOBS = 25
HOME_MAX_JOBS = 40

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
STAGE_MARK = {"done": "✓", "running": "🔄", "failed": "✗"}
PENDING_MARK = "◻"

TASK_CHOICES = (
    ("auto", "Decide from the data"),
    ("classification", "Classification"),
    ("regression", "Regression"),
)
TTL_CHOICES = (("900", "15 min"), ("3600", "1 h"), ("14400", "4 h"), ("86400", "24 h"))
DEFAULT_TASK = "auto"
DEFAULT_TTL = "3600"


@dataclass(frozen=True)
class Message:
    """A message body: `text` is the notification fallback, `blocks` what Slack shows."""

    text: str
    blocks: list[dict[str, Any]]

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for chat_postMessage / chat_update / respond."""
        return {"text": self.text, "blocks": self.blocks}


@dataclass(frozen=True)
class TrainFormValues:
    """Initial values for the `/train` modal, e.g. when opening it again for a retry."""

    name: str = ""
    goal: str = ""
    dataset: str = ""
    dataset_url: str = ""
    target: str = ""
    resources: str = ""
    task: str = DEFAULT_TASK
    ttl: str = DEFAULT_TTL


# --- low-level pieces ---------------------------------------------------------------------


def _plain(text: str, limit: int = MAX_SECTION) -> dict[str, Any]:
    return {"type": "plain_text", "text": truncate(text, limit) or " ", "emoji": True}


def _mrkdwn(text: str, limit: int = MAX_SECTION) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip_mrkdwn(text, limit) or " "}


def _section(text: str, *, accessory: dict[str, Any] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section", "text": _mrkdwn(text)}
    if accessory is not None:
        block["accessory"] = accessory
    return block


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": _plain(text, MAX_HEADER)}


def _context(*texts: str) -> dict[str, Any]:
    elements = [_mrkdwn(t) for t in texts if t][:MAX_CONTEXT_ELEMENTS]
    return {"type": "context", "elements": elements or [_mrkdwn(" ")]}


def _divider() -> dict[str, Any]:
    return {"type": "divider"}


def _confirm(title: str, text: str, confirm: str, deny: str) -> dict[str, Any]:
    return {
        "title": _plain(title, 100),
        "text": _plain(text, 300),
        "confirm": _plain(confirm, 30),
        "deny": _plain(deny, 30),
        "style": "danger",
    }


def _button(
    text: str,
    action_id: str,
    *,
    value: str | None = None,
    url: str | None = None,
    style: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": _plain(text, MAX_BUTTON),
        "action_id": action_id,
    }
    if value is not None:
        button["value"] = value[:2000]
    if url is not None:
        button["url"] = url
    if style is not None:
        button["style"] = style
    if confirm is not None:
        button["confirm"] = confirm
    return button


def _option(value: str, label: str) -> dict[str, Any]:
    return {"text": _plain(label, 75), "value": value[:150]}


def _message(text: str, blocks: list[dict[str, Any]]) -> Message:
    return Message(text=clip_mrkdwn(text, MAX_FALLBACK), blocks=blocks[:MAX_MESSAGE_BLOCKS])


# --- the /train modal ---------------------------------------------------------------------


def _input(
    block_id: BlockId,
    label: str,
    element: dict[str, Any],
    *,
    optional: bool = True,
    hint: str | None = None,
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": _plain(label, 2000),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = _plain(hint, 2000)
    return block


def _text_input(
    action_id: ActionId,
    initial: str,
    *,
    multiline: bool = False,
    placeholder: str | None = None,
    max_length: int | None = None,
) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": action_id}
    if multiline:
        element["multiline"] = True
    if placeholder:
        element["placeholder"] = _plain(placeholder, 150)
    if max_length:
        element["max_length"] = max_length
    if initial:
        element["initial_value"] = initial[:max_length] if max_length else initial
    return element


def _select(
    action_id: ActionId, choices: Sequence[tuple[str, str]], initial: str, placeholder: str
) -> dict[str, Any]:
    options = [_option(value, label) for value, label in choices[:MAX_OPTIONS]]
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": action_id,
        "placeholder": _plain(placeholder, 150),
        "options": options,
    }
    chosen = next((o for o in options if o["value"] == initial), None)
    if chosen is not None:
        element["initial_option"] = chosen
    return element


def train_modal(
    *,
    channel_id: str,
    builtins: Sequence[tuple[str, str]],
    max_upload_mb: int,
    values: TrainFormValues | None = None,
) -> dict[str, Any]:
    """The `/train` form. Without built-in data sets the `dataset` block is left out."""
    v = values or TrainFormValues()
    blocks: list[dict[str, Any]] = [
        _context(
            "Pick *exactly one* data source: a built-in set, a link to a CSV, or an uploaded CSV."
        ),
        _input(
            BlockId.NAME,
            "Model name",
            _text_input(ActionId.NAME, v.name, max_length=80, placeholder="e.g. churn-predictor"),
            optional=False,
        ),
        _input(
            BlockId.GOAL,
            "Goal",
            _text_input(
                ActionId.GOAL,
                v.goal,
                multiline=True,
                placeholder="e.g. predict which customers will churn",
            ),
        ),
    ]
    if builtins:
        blocks.append(
            _input(
                BlockId.DATASET,
                "Built-in data set",
                _select(ActionId.DATASET, builtins, v.dataset, "Choose a data set"),
            )
        )
    blocks += [
        _input(
            BlockId.DATASET_URL,
            "…or a link to a CSV",
            _url_input(v.dataset_url),
            hint="a public http(s) link to a CSV",
        ),
        _input(
            BlockId.DATASET_FILE,
            f"…or upload a CSV (up to {max_upload_mb} MB)",
            {
                "type": "file_input",
                "action_id": ActionId.DATASET_FILE,
                "filetypes": ["csv"],
                "max_files": 1,
            },
        ),
        _input(
            BlockId.TARGET,
            "Target column",
            _text_input(ActionId.TARGET, v.target, max_length=200, placeholder="e.g. churned"),
            hint="required for CSV data; header names match ignoring case",
        ),
        _input(
            BlockId.RESOURCES,
            "Reference resources",
            _text_input(
                ActionId.RESOURCES,
                v.resources,
                multiline=True,
                placeholder="https://example.com/notes-on-this-data",
            ),
            hint="one URL per line",
        ),
        _input(
            BlockId.TASK,
            "Task",
            _select(ActionId.TASK, TASK_CHOICES, v.task or DEFAULT_TASK, "Choose a task"),
        ),
        _input(
            BlockId.TTL,
            "Keep the live app up for",
            _select(ActionId.TTL, TTL_CHOICES, v.ttl or DEFAULT_TTL, "Choose a lifetime"),
        ),
    ]
    return {
        "type": "modal",
        "callback_id": CallbackId.TRAIN_MODAL,
        "title": _plain("Train a model", 24),
        "submit": _plain("Train", 24),
        "close": _plain("Cancel", 24),
        "private_metadata": json.dumps({"channel_id": channel_id}, separators=(",", ":")),
        "blocks": blocks,
    }


def _url_input(initial: str) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "url_text_input",
        "action_id": ActionId.DATASET_URL,
        "placeholder": _plain("https://example.com/data.csv", 150),
    }
    if safe_url(initial):
        element["initial_value"] = initial
    return element


# --- the job card -------------------------------------------------------------------------


def _emoji(snap: JobSnapshot) -> str:
    return STATUS_EMOJI.get(snap.status, "❔")


def _label(snap: JobSnapshot) -> str:
    return STATUS_LABEL.get(snap.status, snap.status.replace("_", " ").capitalize())


def _stage_title(stage: str | None) -> str:
    return STAGE_TITLES.get(stage or "", (stage or "the job").replace("_", " "))


def _name(snap: JobSnapshot, limit: int = 120) -> str:
    return escape(snap.model_name or "model", limit)


def _checklist(snap: JobSnapshot) -> str:
    lines = []
    for stage, title in STAGES:
        state = snap.stage_states.get(stage, "pending")
        line = f"{STAGE_MARK.get(state, PENDING_MARK)} *{title}*"
        if stage == snap.stage and snap.note and state in ("running", "failed"):
            line += f" — {escape(snap.note, 300)}"
        lines.append(line)
    return "\n".join(lines)


def _summary(snap: JobSnapshot) -> str:
    """The card's sentence about where the job stands."""
    status = snap.status
    if status == JobStatus.QUEUED:
        return "*Queued* — waiting for a free worker."
    if status == JobStatus.LIVE:
        metric = format_metric(snap.metrics)
        text = "*Live*" + (f" — {escape(metric, 200)}" if metric else "")
        if snap.expires_at is not None:
            text += f"\nThe app stays up until {slack_date(snap.expires_at)}."
        return text
    if status == JobStatus.FAILED:
        return f"*Failed* during *{_stage_title(snap.stage)}*: {_reason(snap)}"
    if status == JobStatus.CANCELLED:
        was_live = snap.stage_states.get("deploy") == "done"
        return "*Cancelled* — " + (
            "the live app was stopped." if was_live else "nothing more will run."
        )
    if status == JobStatus.EXPIRED:
        return "*Expired* — the live app reached the end of its lifetime and was shut down."
    return f"*{_label(snap)}*"


def _reason(snap: JobSnapshot, limit: int = 1500) -> str:
    return escape(snap.error, limit) if snap.error else "it stopped without saying why."


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
    if snap.warnings:
        details.append(f"⚠️ {snap.warnings} warning{'s' if snap.warnings != 1 else ''} in thread")
    return details


def _card_buttons(snap: JobSnapshot) -> list[dict[str, Any]]:
    name = truncate(snap.model_name or "this model", 60)
    if snap.status in ACTIVE:
        return [
            _button(
                "Cancel",
                ActionId.CANCEL_JOB,
                value=snap.job_id,
                style="danger",
                confirm=_confirm(
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
            buttons.append(_button("Open live app", ActionId.OPEN_APP, url=url, style="primary"))
        buttons.append(
            _button(
                "Stop app",
                ActionId.CANCEL_JOB,
                value=snap.job_id,
                confirm=_confirm(
                    "Stop the live app?",
                    f"The app for {name} goes offline for everyone.",
                    "Stop app",
                    "Keep it running",
                ),
            )
        )
        return buttons
    if snap.status == JobStatus.FAILED:
        return [_button("Retry", ActionId.RETRY_JOB, value=snap.job_id, style="primary")]
    if snap.status in (JobStatus.CANCELLED, JobStatus.EXPIRED):
        return [_button("Train again", ActionId.RETRY_JOB, value=snap.job_id, style="primary")]
    return []


def job_card(snap: JobSnapshot) -> Message:
    """The one status card per job, updated in place as the job moves."""
    blocks = [
        _header(f"{_emoji(snap)} {snap.model_name or 'model'}"),
        _section(_summary(snap)),
        _section(_checklist(snap)),
        _context(*_details(snap)),
    ]
    buttons = _card_buttons(snap)
    if buttons:
        blocks.append({"type": "actions", "block_id": BlockId.CARD_ACTIONS, "elements": buttons})
    text = f"{_emoji(snap)} {_name(snap)}: {_label(snap)}"
    if snap.status == JobStatus.LIVE and safe_url(snap.url):
        text += f" — {snap.url}"
    return _message(text, blocks)


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


# --- thread replies -----------------------------------------------------------------------


def stage_reply(stage: str, title: str, summary: str) -> Message:
    """A finished stage: "✓ Data set — built-in iris (147 rows): …"."""
    text = f"✓ *{escape(title or _stage_title(stage), 100)}* — {escape(summary, 2500)}"
    return _message(text, [_section(text)])


def note_reply(message: str) -> Message:
    """A plain update in the thread, e.g. "the live app was stopped: its lifetime ran out"."""
    text = escape(message, 2900)
    return _message(text, [_section(text)])


def cancelled_reply(user_id: str) -> Message:
    text = f"🚫 Cancelled by {user_ref(user_id)}."
    return _message(text, [_section(text)])


def warning_reply(message: str) -> Message:
    text = f"⚠️ {escape(message, 2900)}"
    return _message(text, [_section(text)])


def failure_reply(snap: JobSnapshot, log_tail: str) -> Message:
    """Why the job failed, the end of its log, and what to do next."""
    head = f"❌ *{_name(snap)}* failed during *{_stage_title(snap.stage)}*: {_reason(snap, 2500)}"
    blocks = [_section(head)]
    lines = log_tail.splitlines()[-LOG_TAIL_LINES:]
    if lines:
        block, _ = code_block(lines, MAX_SECTION)
        blocks.append(_section(block))
    short = snap.short_id
    blocks.append(
        _context(
            f"Full log: {code(f'{TRAIN_COMMAND} logs {short}', 80)}",
            f"Try again: {code(f'{TRAIN_COMMAND} retry {short}', 80)}",
        )
    )
    return _message(head, blocks)


def live_reply(snap: JobSnapshot) -> Message:
    """The app is up: the score, where it lives, until when, and how to call it."""
    metrics = snap.metrics or {}
    app_link = link(snap.url, "Open the live app")
    head = f"✅ *{_name(snap)}* is live" + (f": {app_link}" if app_link else ".")
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
    blocks = [_section("\n".join([head, *facts]))]
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
        blocks.append(_section("Try it from a terminal (`/schema` lists the features):\n" + block))
    text = f"✅ {_name(snap)} is live" + (f": {url}" if url else "")
    return _message(text, blocks)


# --- command answers (ephemeral) ----------------------------------------------------------

HELP_LINES = (
    (TRAIN_COMMAND, "open the form to train a model"),
    (f"{TRAIN_COMMAND} help", "show this help"),
    (f"{TRAIN_COMMAND} status [ID]", "where a job stands (your latest job if no ID)"),
    (f"{TRAIN_COMMAND} list", "recent jobs in this channel"),
    (f"{TRAIN_COMMAND} cancel ID", "stop a running job or a live app"),
    (f"{TRAIN_COMMAND} retry ID", "train a failed, cancelled or expired job again"),
    (f"{TRAIN_COMMAND} logs ID", "the end of a job's training log"),
)


def help_message() -> Message:
    lines = "\n".join(f"`{command}` — {what}" for command, what in HELP_LINES)
    blocks = [
        _section("*TrainBot* trains a model from your data and gives you a live app to try it."),
        _section(lines),
        _context("IDs are the short job ids shown on each job card and in `/train list`."),
    ]
    return _message(f"TrainBot commands: {', '.join(c for c, _ in HELP_LINES)}", blocks)


def _headline(snap: JobSnapshot) -> str:
    return f"{_emoji(snap)} *{_name(snap, 100)}* {code(snap.short_id, 40)} — {_label(snap)}"


def status_message(snap: JobSnapshot) -> Message:
    facts = []
    if snap.status in ACTIVE or snap.status == JobStatus.FAILED:
        facts.append(f"*Stage:* {_stage_title(snap.stage) if snap.stage else 'not started'}")
    facts.append(
        f"*Elapsed:* {format_duration(snap.elapsed_seconds)}"
        if snap.started_at
        else "*Elapsed:* not started yet"
    )
    if snap.note and snap.status in ACTIVE:
        facts.append(f"*Latest:* {escape(snap.note, 300)}")
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
        facts.append(f"*Reason:* {_reason(snap, 1500)}")
    blocks = [_section(_headline(snap)), _section("\n".join(facts))]
    return _message(f"{_emoji(snap)} {_name(snap)}: {_label(snap)}", blocks)


def _job_line(snap: JobSnapshot) -> str:
    line = f"{code(snap.short_id, 40)} {_emoji(snap)} *{_name(snap, 100)}* — {_label(snap)}"
    if snap.status == JobStatus.LIVE:
        app_link = link(snap.url, "open app")
        if app_link:
            line += f" · {app_link}"
    return line


def _packed_sections(lines: Sequence[str]) -> list[dict[str, Any]]:
    """Lines joined into as few sections as fit Slack's section text limit."""
    sections: list[dict[str, Any]] = []
    chunk: list[str] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > MAX_SECTION:
            sections.append(_section("\n".join(chunk)))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        sections.append(_section("\n".join(chunk)))
    return sections


def list_message(snaps: Sequence[JobSnapshot], channel_id: str) -> Message:
    """Recent jobs in a channel, newest first as given."""
    where = channel_ref(channel_id)
    if not snaps:
        text = f"No jobs in {where} yet. Start one with `{TRAIN_COMMAND}`."
        return _message(text, [_section(text)])
    shown = snaps[:LIST_MAX_JOBS]
    blocks = [
        _section(f"*Recent jobs in {where}*"),
        *_packed_sections([_job_line(s) for s in shown]),
    ]
    if len(snaps) > len(shown):
        blocks.append(_context(f"…and {len(snaps) - len(shown)} older jobs not shown."))
    return _message(f"Recent jobs in {where}: {len(snaps)}", blocks)


def logs_message(snap: JobSnapshot, lines: Sequence[str], total: int) -> Message:
    """The end of a job's log, as much as fits in one section."""
    title = f"📜 Log of *{_name(snap, 100)}* {code(snap.short_id, 40)}"
    if not lines:
        text = f"{title}: no log lines yet."
        return _message(text, [_section(text)])
    block, shown = code_block(lines, MAX_SECTION)
    head = f"{title} — showing the last {shown} of {max(total, shown)} lines"
    return _message(head, [_section(head), _section(block)])


def error_message(text: str) -> Message:
    body = f"❗ {escape(text, 2900)}"
    return _message(body, [_section(body)])


# --- App Home -----------------------------------------------------------------------------


def _home_job(snap: JobSnapshot, position: int) -> dict[str, Any]:
    lines = [f"{_emoji(snap)} *{_name(snap, 100)}* — {_label(snap)} · {code(snap.short_id, 40)}"]
    metric = format_metric(snap.metrics)
    if metric:
        lines.append(escape(metric, 200))
    if snap.status == JobStatus.FAILED:
        lines.append(_reason(snap, 300))
    url = safe_url(snap.url)
    accessory = None
    if snap.status == JobStatus.LIVE and url:
        # Action ids must be unique within a view, so each job's button gets its position.
        action_id = open_app_action_id(position)
        accessory = _button("Open live app", action_id, value=snap.job_id, url=url, style="primary")
    return _section("\n".join(lines), accessory=accessory)


def home_view(snaps: Sequence[JobSnapshot]) -> dict[str, Any]:
    """The App Home tab: how to start, then the user's recent jobs."""
    blocks: list[dict[str, Any]] = [
        _header("TrainBot"),
        _section(
            f"Train a model from any channel: type `{TRAIN_COMMAND}` and fill in the form. "
            f"`{TRAIN_COMMAND} help` lists every command."
        ),
        _divider(),
        _section("*Your recent jobs*"),
    ]
    if not snaps:
        blocks.append(_context(f"No jobs yet. Start one with `{TRAIN_COMMAND}`."))
    shown = snaps[:HOME_MAX_JOBS]
    blocks += [_home_job(s, i) for i, s in enumerate(shown)]
    if len(snaps) > len(shown):
        blocks.append(_context(f"…and {len(snaps) - len(shown)} older jobs not shown."))
    return {"type": "home", "blocks": blocks[:MAX_VIEW_BLOCKS]}
