"""What one job event looks like in Slack: the job's status card and the replies in its thread.

Called from the job's channel lane (bot.slack_lanes), so a job's card and thread are only ever
touched by one thread at a time. Card edits are coalesced (at most one per `card_interval` a
job), a queued or running job's card is refreshed now and then so its elapsed time stays true,
and every write goes through the channel pacer; a 429 that still happens is retried by the
client after its Retry-After (bot.slack_client).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.engine import Engine

from bot import blocks
from bot.manifest import APP_NAME
from bot.slack_lanes import ChannelPacer
from bot.snapshot import STAGE_TITLES, JobSnapshot, load_snapshot
from pipeline.events import EventKind
from pipeline.limits import FAILURE_LOG_LINES
from pipeline.training_report import report_of
from storage import queries
from storage.db import session_scope
from storage.models import JobEvent
from storage.states import ACTIVE, TERMINAL, JobStatus, Stage

log = logging.getLogger(__name__)

CARD_POST_ATTEMPTS = 3
ELAPSED_REFRESH_SECONDS = 15.0
ENDED = {status.value for status in (*TERMINAL, JobStatus.LIVE)}
MOVING = {status.value for status in ACTIVE}
CHANNEL_FALLBACK_ERRORS = {"not_in_channel", "channel_not_found", "is_archived"}
# Conversation ids of direct messages (D) and of users (U, W: the DM with them). The bot is
# always in its own DMs, and conversations.join does not take them.
DIRECT_MESSAGE_PREFIXES = ("D", "U", "W")
CHART_NOT_SHARED = (
    f"The chart could not be shared here: invite @{APP_NAME} to this channel "
    f"(/invite @{APP_NAME}) to get charts."
)
CHART_TITLES = {"classification": "confusion matrix", "regression": "predicted vs actual"}


@dataclass
class _Card:
    client: WebClient
    channel: str
    ts: str
    dirty: bool = False
    last_edit: float = 0.0
    active: bool = True  # queued or running: the elapsed time on the card moves
    stage_notes: dict[str, str] = field(default_factory=dict)


class JobMessenger:
    def __init__(
        self,
        engine: Engine,
        pacer: ChannelPacer,
        *,
        card_interval: float = 1.0,
        extend_hours: float = 1.0,
    ) -> None:
        self.engine = engine
        self.pacer = pacer
        self.card_interval = card_interval
        self.extend_hours = extend_hours
        self._cards: dict[str, _Card] = {}
        self._post_failures: dict[str, int] = {}
        # Channels this process saw the bot join or share into: it spares a join call, nothing
        # more. Slack is the truth (the bot can be removed at any time); see _share_chart.
        self._member_of: set[str] = set()

    # -- the lanes' side ------------------------------------------------------------------

    def show(self, event: JobEvent, client: WebClient) -> None:
        """Everything `event` changes in Slack, written before this returns."""
        kind = EventKind(event.kind)
        card = self._card(event.job_id, client)
        if card is None or kind == EventKind.QUEUED:
            return  # the card is all a queued job shows (or it could not be posted)
        card.dirty = True
        status = str(event.data.get("status") or "")
        if status in ENDED:
            card.active = False
        elif status in MOVING:
            card.active = True  # e.g. handed back to the queue by a stopping worker
        if kind == EventKind.PROGRESS:
            card.stage_notes[event.stage] = event.message
        elif kind == EventKind.FINISHED and event.stage in STAGE_TITLES:
            summary = card.stage_notes.get(event.stage, "done")
            self._reply(card, blocks.stage_reply(event.stage, STAGE_TITLES[event.stage], summary))
            if event.stage == Stage.TRAIN.value:
                self._training_report(card, event)
        elif kind == EventKind.WARNING:
            self._reply(card, blocks.warning_reply(event.message))
        elif kind == EventKind.EXPIRING:
            self._expiring(card, event)
        elif kind == EventKind.FAILED:
            snap = self._edit_card(event.job_id, card)
            detail = str(event.data.get("detail") or "") or self._log_tail(event.job_id)
            self._reply(card, blocks.failure_reply(snap, detail))
        elif kind == EventKind.FINISHED:
            self._finished(card, event)

    def flush_due(self, job_ids: set[str]) -> float | None:
        """Sends the due card edits of `job_ids`; the seconds until the next one is due."""
        now = time.monotonic()
        next_due: float | None = None
        for job_id in job_ids:
            card = self._cards.get(job_id)
            if card is None:
                continue
            # A running job's card also ticks now and then, so its elapsed time stays true.
            if card.active and now - card.last_edit >= ELAPSED_REFRESH_SECONDS:
                card.dirty = True
            if card.dirty and now - card.last_edit >= self.card_interval:
                try:
                    self._edit_card(job_id, card)
                except SlackApiError as error:
                    log.warning("could not edit the card of job %s: %s", job_id, _code(error))
                    card.dirty = False
                now = time.monotonic()
            if card.dirty:
                due = card.last_edit + self.card_interval - now
            elif card.active:
                due = card.last_edit + ELAPSED_REFRESH_SECONDS - now
            else:
                continue
            next_due = due if next_due is None else min(next_due, due)
        return next_due

    def adopt(self, job_id: str, client: WebClient, channel: str, ts: str) -> None:
        """A card posted before (by this process or another): refresh it soon."""
        self._cards.setdefault(job_id, _Card(client=client, channel=channel, ts=ts, dirty=True))

    def editing(self) -> bool:
        """True while some card edit is waiting to be sent."""
        return any(card.dirty for card in list(self._cards.values()))

    # -- what each kind of event says -------------------------------------------------------

    def _finished(self, card: _Card, event: JobEvent) -> None:
        snap = self._edit_card(event.job_id, card)
        if event.data.get("status") == JobStatus.CANCELLED.value:
            self._reply(card, blocks.cancelled_reply(str(event.data.get("by") or "")))
        elif snap.status == JobStatus.LIVE.value:
            self._reply(card, blocks.live_reply(snap))
            self._upload_chart(event.job_id, card, snap)
        else:
            self._reply(card, blocks.note_reply(event.message))

    def _training_report(self, card: _Card, finished: JobEvent) -> None:
        """What the training that just finished tried and learned, when train.py said so.
        Read from the stored events, not this process's memory: another notifier may have
        shown the events before this one."""
        with session_scope(self.engine) as session:
            progress = queries.list_events(session, job_id=finished.job_id, kinds=["progress"])
        report = report_of(e for e in progress if e.id is not None and e.id < (finished.id or 0))
        if report is not None:
            self._reply(card, blocks.training_reply(report))

    def _expiring(self, card: _Card, event: JobEvent) -> None:
        try:
            ends = datetime.fromisoformat(str(event.data.get("expires_at")))
        except ValueError:
            log.warning("expiring event %s has no valid expires_at", event.id)
            return
        self._reply(card, blocks.expiry_notice(event.job_id, ends, self.extend_hours))

    # -- cards ------------------------------------------------------------------------------

    def _card(self, job_id: str, client: WebClient) -> _Card | None:
        """The job's card; posts it now if it was not yet (or posting failed before)."""
        card = self._cards.get(job_id)
        if card is not None:
            return card
        with session_scope(self.engine) as session:
            job = queries.get_job(session, job_id=job_id)
        if job is None:
            return None
        if job.card_ts and job.card_channel_id:
            card = self._cards[job_id] = _Card(client, job.card_channel_id, job.card_ts)
            return card
        failures = self._post_failures.get(job_id, 0)
        if failures >= CARD_POST_ATTEMPTS:
            return None
        try:
            return self._post_card(job_id, client)
        except SlackApiError as error:
            self._post_failures[job_id] = failures + 1
            log.warning(
                "could not post the card of job %s (attempt %d): %s",
                job_id,
                failures + 1,
                _code(error),
            )
            return None

    def _post_card(self, job_id: str, client: WebClient) -> _Card:
        snap, job_channel, user = self._snapshot_and_place(job_id)
        message = blocks.job_card(snap)
        response = self._post_with_fallback(client, job_channel, user, message, snap)
        card = _Card(client, response["channel"], response["ts"], last_edit=time.monotonic())
        self._cards[job_id] = card
        with session_scope(self.engine) as session:
            queries.update_job(
                session, job_id=job_id, card_channel_id=card.channel, card_ts=card.ts
            )
        return card

    def _post_with_fallback(
        self, client: WebClient, channel: str, user: str, message: blocks.Message, snap: JobSnapshot
    ) -> Any:
        metadata = blocks.card_metadata(snap)

        def post(to: str) -> Any:
            return self.pacer.write(
                to,
                lambda: client.chat_postMessage(
                    channel=to, metadata=metadata, **message.as_kwargs()
                ),
            )

        try:
            return post(channel)
        except SlackApiError as error:
            if _code(error) not in CHANNEL_FALLBACK_ERRORS:
                raise
        # The bot is not in the channel: join it if it is public, else tell the person directly.
        if self._join(client, channel):
            try:
                return post(channel)
            except SlackApiError:
                pass
        log.info(
            "cannot post in %s; sending job %s to <@%s> directly", channel, snap.short_id, user
        )
        return post(user)

    def _edit_card(self, job_id: str, card: _Card) -> JobSnapshot:
        wait = card.last_edit + self.card_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # only this channel's lane waits
        card.dirty = False
        snap, _, _ = self._snapshot_and_place(job_id)
        message = blocks.job_card(snap)
        self.pacer.write(
            card.channel,
            lambda: card.client.chat_update(
                channel=card.channel,
                ts=card.ts,
                metadata=blocks.card_metadata(snap),
                **message.as_kwargs(),
            ),
        )
        card.last_edit = time.monotonic()
        return snap

    # -- thread -------------------------------------------------------------------------------

    def _reply(self, card: _Card, message: blocks.Message) -> None:
        self.pacer.write(
            card.channel,
            lambda: card.client.chat_postMessage(
                channel=card.channel, thread_ts=card.ts, **message.as_kwargs()
            ),
        )

    def _upload_chart(self, job_id: str, card: _Card, snap: JobSnapshot) -> None:
        with session_scope(self.engine) as session:
            job = queries.get_job(session, job_id=job_id)
        chart = (job.artifacts or {}).get("chart.png") if job else None
        if not chart or not Path(chart).is_file():
            return
        title = f"{snap.model_name}: {CHART_TITLES.get(snap.task or '', 'chart')}"
        if not self._share_chart(card, chart, title):
            self._reply(card, blocks.note_reply(CHART_NOT_SHARED))

    def _share_chart(self, card: _Card, chart: str, title: str) -> bool:
        """True once the chart is in the thread. Sharing a file needs membership, which
        chat:write.public (enough for the card) does not give: join first where needed."""
        channel = card.channel
        for _ in range(2):
            if channel not in self._member_of and not channel.startswith(DIRECT_MESSAGE_PREFIXES):
                self._join(card.client, channel)  # refused for private channels; the share tells
            try:
                self.pacer.write(
                    channel,
                    lambda: card.client.files_upload_v2(
                        channel=channel,
                        thread_ts=card.ts,
                        file=chart,
                        filename="chart.png",
                        title=title,
                    ),
                )
            except SlackApiError as error:
                if _code(error) not in CHANNEL_FALLBACK_ERRORS:
                    raise
                if channel not in self._member_of:
                    log.info("cannot share the chart in %s: the bot is not a member", channel)
                    return False
                self._member_of.discard(channel)  # removed since it joined: try joining again
                continue
            self._member_of.add(channel)
            return True
        return False

    def _join(self, client: WebClient, channel: str) -> bool:
        """Joins a public channel; False where Slack refuses (private, archived, no scope)."""
        try:
            client.conversations_join(channel=channel)
        except SlackApiError as error:
            log.info("cannot join %s (%s)", channel, _code(error))
            return False
        self._member_of.add(channel)
        return True

    def _log_tail(self, job_id: str) -> str:
        with session_scope(self.engine) as session:
            lines = queries.list_events(session, job_id=job_id, kinds=["log"])
        return "\n".join(e.message for e in lines[-FAILURE_LOG_LINES:])

    def _snapshot_and_place(self, job_id: str) -> tuple[JobSnapshot, str, str]:
        with session_scope(self.engine) as session:
            job = queries.get_job(session, job_id=job_id)
            if job is None:
                raise LookupError(job_id)
            snap = load_snapshot(session, job)
        return snap, job.channel_id or job.requested_by, job.requested_by


def _code(error: SlackApiError) -> str:
    return str(error.response.get("error"))
