"""`/train` and its subcommands. Every answer is an ephemeral ack, so it is immediate."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import blocks
from bot.ids import TRAIN_COMMAND
from bot.limits import LIST_JOBS
from bot.listeners.reading import request_of
from bot.payloads import SlashCommand
from bot.service import BotContext, log_lines, snapshot
from bot.slack_client import retry_after, without_waits
from pipeline.builtin_datasets import BUILTIN_DATASETS
from pipeline.service import ActionRefused, JobService, ServiceError

log = logging.getLogger(__name__)

BUILTIN_CHOICES = [(key, key.replace("_", " ")) for key in BUILTIN_DATASETS]


def register(app: App, ctx: BotContext) -> None:
    # Tells someone after the ack that their form did not open, off Bolt's listener threads:
    # the notice may wait out a 429 (a channel takes about a message a second) without
    # holding the thread that the next request's ack needs.
    notices = ThreadPoolExecutor(max_workers=2, thread_name_prefix="command-notices")

    @app.command(TRAIN_COMMAND)
    def handle_train_command(ack: Ack, context: dict[str, Any], client: WebClient) -> None:
        command: SlashCommand = request_of(context)
        words = command.text.split()
        if not words:
            ack()
            open_train_modal(client, ctx, command, notices)
            return
        name, args = words[0].lower(), words[1:]
        answer = SUBCOMMANDS.get(name)
        if answer is None:
            ack(**_usage_error(f"There is no `{TRAIN_COMMAND} {name[:30]}`.").as_kwargs())
            return
        try:
            # Every subcommand sees only the jobs of the workspace it was typed in.
            message = answer(Asked(ctx.jobs_for(context), command), args)
        except ServiceError as error:
            message = blocks.error_message(f"{str(error)[:1].upper()}{str(error)[1:]}.")
        ack(**message.as_kwargs())


def open_train_modal(
    client: WebClient, ctx: BotContext, command: SlashCommand, notices: Executor
) -> None:
    """After the ack, on one of Bolt's listener threads. A 429 is not waited out: the
    trigger would have expired by then, and the thread is needed for other requests' acks.
    The person is told instead (through `notices`), and when to try again."""
    view = blocks.train_modal(
        channel_id=command.channel_id,
        builtins=BUILTIN_CHOICES,
        max_upload_mb=ctx.services.settings.max_dataset_mb,
        default_lifetime=ctx.default_lifetime,
        max_lifetime=ctx.max_lifetime,
        budgets=ctx.budgets,
    )
    try:
        without_waits(client).views_open(trigger_id=command.trigger_id, view=view)
    except SlackApiError as error:
        wait = retry_after(error)
        if wait is None:
            log.warning("views.open failed: %s", error.response.get("error"))
            text = (
                f"Slack did not open the form ({error.response.get('error')}); "
                f"run `{TRAIN_COMMAND}` again."
            )
        else:
            log.warning("views.open was rate limited (Retry-After: %s s)", wait)
            text = busy_text(wait)
        notices.submit(_tell, client, command, text)


def _tell(client: WebClient, command: SlashCommand, text: str) -> None:
    try:
        client.chat_postEphemeral(
            channel=command.channel_id,
            user=command.user_id,
            **blocks.error_message(text).as_kwargs(),
        )
    except (SlackApiError, OSError) as error:  # nobody left to tell; one line, not a traceback
        reason = error.response.get("error") if isinstance(error, SlackApiError) else error
        log.warning("could not tell %s that the form did not open: %s", command.user_id, reason)


def busy_text(wait: int) -> str:
    """What someone reads whose form Slack would not open for `wait` seconds."""
    seconds = max(1, wait)
    unit = "second" if seconds == 1 else "seconds"
    return (
        f"Slack is busy and did not open the form; run `{TRAIN_COMMAND}` again in {seconds} {unit}."
    )


@dataclass(frozen=True)
class Asked:
    """A subcommand's context: the jobs its workspace may see, and what was typed."""

    jobs: JobService
    command: SlashCommand


def _help(asked: Asked, args: list[str]) -> blocks.Message:
    return blocks.help_message()


def _status(asked: Asked, args: list[str]) -> blocks.Message:
    if args:
        return blocks.status_message(snapshot(asked.jobs.status(args[0])))
    latest = asked.jobs.latest(requested_by=asked.command.user_id)
    if latest is None:
        return blocks.error_message(f"You have no jobs yet. Start one with `{TRAIN_COMMAND}`.")
    return blocks.status_message(snapshot(latest))


def _list(asked: Asked, args: list[str]) -> blocks.Message:
    channel = asked.command.channel_id
    # The list shows each job's row (status, model, link), none of its events.
    page = asked.jobs.list(channel_id=channel, limit=LIST_JOBS, with_events=False)
    return blocks.list_message([snapshot(item) for item in page.items], channel, total=page.total)


def _cancel(asked: Asked, args: list[str]) -> blocks.Message:
    job = asked.jobs.cancel(_job_ref(args, "cancel"), by=asked.command.user_id)
    return blocks.note_reply(f"Job {job.short_id} is cancelled.")


def _retry(asked: Asked, args: list[str]) -> blocks.Message:
    job = asked.jobs.retry(_job_ref(args, "retry"), by=asked.command.user_id, origin="slack")
    return blocks.note_reply(
        f"Retrying as job {job.short_id} (attempt {job.attempt}); its card follows in the channel."
    )


def _logs(asked: Asked, args: list[str]) -> blocks.Message:
    snap, lines, total = log_lines(asked.jobs, _job_ref(args, "logs"))
    return blocks.logs_message(snap, lines, total)


def _extend(asked: Asked, args: list[str]) -> blocks.Message:
    ref = _job_ref(args, "extend")
    try:
        hours = float(args[1]) if len(args) > 1 else 1.0
    except ValueError:
        raise ActionRefused(
            f"say how many hours, such as `{TRAIN_COMMAND} extend {ref[:12]} 2`"
        ) from None
    extended = asked.jobs.extend(ref, hours=hours)
    until = f"The app of job {extended.job.short_id} stays up until {extended.expires_at:%H:%M} UTC"
    if extended.cut_short:
        until += f", sooner than asked: the {asked.jobs.provider} sandbox stops it then"
    return blocks.note_reply(f"{until}.")


def _job_ref(args: list[str], subcommand: str) -> str:
    if not args:
        raise ActionRefused(f"say which job: `{TRAIN_COMMAND} {subcommand} ID`")
    return args[0]


def _usage_error(text: str) -> blocks.Message:
    help_text = blocks.help_message()
    return blocks.Message(text=text, blocks=blocks.error_message(text).blocks + help_text.blocks)


SUBCOMMANDS: dict[str, Callable[[Asked, list[str]], blocks.Message]] = {
    "help": _help,
    "status": _status,
    "list": _list,
    "cancel": _cancel,
    "retry": _retry,
    "logs": _logs,
    "extend": _extend,
}
