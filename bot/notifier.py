"""Keeps each job's status card and thread in Slack current, from pipeline events.

The pipeline publishes events from worker threads; `publish` only enqueues them. One
thread talks to Slack in order, so a job's replies never overtake each other. Card edits
are coalesced (at most one per `card_interval` a job) and every write to a channel is
spaced by `channel_interval`, Slack's one-message-a-second pace; a 429 that still happens
is retried by the client after its Retry-After.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.engine import Engine

from bot import blocks
from bot.manifest import APP_NAME
from bot.snapshot import STAGE_TITLES, JobSnapshot, load_snapshot
from pipeline.events import Event, EventKind
from pipeline.limits import FAILURE_LOG_LINES
from storage import queries
from storage.db import session_scope
from storage.states import TERMINAL, JobStatus

log = logging.getLogger(__name__)

CARD_POST_ATTEMPTS = 3
ELAPSED_REFRESH_SECONDS = 15.0
ENDED = {status.value for status in (*TERMINAL, JobStatus.LIVE)}
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
    channel: str
    ts: str
    dirty: bool = False
    last_edit: float = 0.0
    active: bool = True  # queued or running: the elapsed time on the card moves
    stage_notes: dict[str, str] = field(default_factory=dict)


class SlackNotifier:
    def __init__(
        self,
        client: WebClient,
        engine: Engine,
        *,
        channel_interval: float = 1.0,
        card_interval: float = 1.0,
    ) -> None:
        self.client = client
        self.engine = engine
        self.channel_interval = channel_interval
        self.card_interval = card_interval
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._cards: dict[str, _Card] = {}
        self._last_write: dict[str, float] = {}
        self._not_slack: set[str] = set()
        self._post_failures: dict[str, int] = {}
        # Channels this process saw the bot join or share into: it spares a join call, nothing
        # more. Slack is the truth (the bot can be removed at any time); see _share_chart.
        self._member_of: set[str] = set()
        self._stop = threading.Event()
        self._busy = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="slack-notifier", daemon=True)

    # -- the ProgressSink side and the bot's side -------------------------------------------

    def publish(self, event: Event) -> None:
        self._queue.put(("event", event))

    def job_submitted(self, job_id: str) -> None:
        """Posts the job's status card (before any of its events are shown)."""
        self._queue.put(("card", job_id))

    def reply(self, job_id: str, message: blocks.Message) -> None:
        """A reply in the job's thread, after everything queued before it."""
        self._queue.put(("reply", (job_id, message)))

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self.wait_idle(timeout)
        self._stop.set()
        self._thread.join(timeout)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once everything queued has been sent and no card edit is pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = any(card.dirty for card in list(self._cards.values()))
            if self._queue.empty() and not self._busy.is_set() and not pending:
                return True
            time.sleep(0.05)
        return False

    # -- the sending thread -------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                kind, payload = self._queue.get(timeout=0.1)
            except queue.Empty:
                kind, payload = "", None
            self._busy.set()
            try:
                if kind:
                    self._handle(kind, payload)
                self._flush_due_cards()
            except Exception:  # noqa: BLE001 - one bad message must not stop the others
                log.exception("could not update Slack (%s)", kind or "card flush")
            finally:
                self._busy.clear()

    def _handle(self, kind: str, payload: Any) -> None:
        if kind == "card":
            self._card(payload)
        elif kind == "reply":
            job_id, message = payload
            card = self._card(job_id)
            if card is not None:
                self._send_reply(card, message)
        elif kind == "event":
            self._on_event(payload)

    def _on_event(self, event: Event) -> None:
        if event.kind == EventKind.LOG:
            return  # output lines reach Slack only as a summary, on failure or via /train logs
        card = self._card(event.job_id)
        if card is None:
            return  # not a Slack job (e.g. started from the CLI)
        card.dirty = True
        if event.data.get("status") in ENDED:
            card.active = False
        if event.kind == EventKind.PROGRESS:
            card.stage_notes[event.stage] = event.message
        elif event.kind == EventKind.FINISHED and event.stage in STAGE_TITLES:
            summary = card.stage_notes.get(event.stage, "done")
            self._send_reply(
                card, blocks.stage_reply(event.stage, STAGE_TITLES[event.stage], summary)
            )
        elif event.kind == EventKind.WARNING:
            self._send_reply(card, blocks.warning_reply(event.message))
        elif event.kind == EventKind.FAILED:
            snap = self._edit_card(event.job_id, card)
            detail = str(event.data.get("detail") or "") or self._log_tail(event.job_id)
            self._send_reply(card, blocks.failure_reply(snap, detail))
        elif event.kind == EventKind.FINISHED:
            snap = self._edit_card(event.job_id, card)
            if snap.status == "live":
                self._send_reply(card, blocks.live_reply(snap))
                self._upload_chart(event.job_id, card, snap)
            elif snap.status != "cancelled":  # whoever cancels says so in the thread
                self._send_reply(card, blocks.note_reply(event.message))

    # -- cards ------------------------------------------------------------------------------------

    def _post_card(self, job_id: str) -> None:
        snap, job_channel, user = self._snapshot_and_place(job_id)
        message = blocks.job_card(snap)
        response = self._post_with_fallback(job_channel, user, message, snap)
        card = _Card(channel=response["channel"], ts=response["ts"], last_edit=time.monotonic())
        self._cards[job_id] = card
        with session_scope(self.engine) as session:
            queries.update_job(
                session, job_id=job_id, card_channel_id=card.channel, card_ts=card.ts
            )

    def _post_with_fallback(
        self, channel: str, user: str, message: blocks.Message, snap: JobSnapshot
    ) -> Any:
        metadata = blocks.card_metadata(snap)

        def post(to: str) -> Any:
            return self._write(
                to,
                self.client.chat_postMessage,
                channel=to,
                metadata=metadata,
                **message.as_kwargs(),
            )

        try:
            return post(channel)
        except SlackApiError as error:
            if error.response.get("error") not in CHANNEL_FALLBACK_ERRORS:
                raise
        # The bot is not in the channel: join it if it is public, else tell the person directly.
        if self._join(channel):
            try:
                return post(channel)
            except SlackApiError:
                pass
        log.info(
            "cannot post in %s; sending job %s to <@%s> directly", channel, snap.short_id, user
        )
        return post(user)

    def _flush_due_cards(self) -> None:
        now = time.monotonic()
        for job_id, card in list(self._cards.items()):
            # A running job's card also ticks now and then, so its elapsed time stays true.
            if card.active and now - card.last_edit >= ELAPSED_REFRESH_SECONDS:
                card.dirty = True
            if card.dirty and now - card.last_edit >= self.card_interval:
                self._edit_card(job_id, card)

    def _edit_card(self, job_id: str, card: _Card) -> JobSnapshot:
        wait = card.last_edit + self.card_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        card.dirty = False
        snap, _, _ = self._snapshot_and_place(job_id)
        self._write(
            card.channel,
            self.client.chat_update,
            channel=card.channel,
            ts=card.ts,
            metadata=blocks.card_metadata(snap),
            **blocks.job_card(snap).as_kwargs(),
        )
        card.last_edit = time.monotonic()
        return snap

    def _card(self, job_id: str) -> _Card | None:
        """The job's card; posts it now if posting failed before (a Slack hiccup)."""
        card = self._cards.get(job_id)
        if card is not None or job_id in self._not_slack:
            return card
        with session_scope(self.engine) as session:
            job = queries.get_job(session, job_id=job_id)
        if job is None or job.origin != "slack":
            self._not_slack.add(job_id)
            return None
        if job.card_ts and job.card_channel_id:
            card = self._cards[job_id] = _Card(channel=job.card_channel_id, ts=job.card_ts)
            return card
        failures = self._post_failures.get(job_id, 0)
        if failures >= CARD_POST_ATTEMPTS:
            return None
        try:
            self._post_card(job_id)
        except SlackApiError:
            self._post_failures[job_id] = failures + 1
            log.warning("could not post the card of job %s (attempt %d)", job_id, failures + 1)
            return None
        return self._cards.get(job_id)

    # -- thread ----------------------------------------------------------------------------------

    def _send_reply(self, card: _Card, message: blocks.Message) -> None:
        self._write(
            card.channel,
            self.client.chat_postMessage,
            channel=card.channel,
            thread_ts=card.ts,
            **message.as_kwargs(),
        )

    def _upload_chart(self, job_id: str, card: _Card, snap: JobSnapshot) -> None:
        with session_scope(self.engine) as session:
            job = queries.get_job(session, job_id=job_id)
        chart = (job.artifacts or {}).get("chart.png") if job else None
        if not chart or not Path(chart).is_file():
            return
        title = f"{snap.model_name}: {CHART_TITLES.get(snap.task or '', 'chart')}"
        if not self._share_chart(card, chart, title):
            self._send_reply(card, blocks.note_reply(CHART_NOT_SHARED))

    def _share_chart(self, card: _Card, chart: str, title: str) -> bool:
        """True once the chart is in the thread. Sharing a file needs membership, which
        chat:write.public (enough for the card) does not give: join first where needed."""
        channel = card.channel
        for _ in range(2):
            if channel not in self._member_of and not channel.startswith(DIRECT_MESSAGE_PREFIXES):
                self._join(channel)  # refused for private channels; the share then tells
            try:
                self._write(
                    channel,
                    self.client.files_upload_v2,
                    channel=channel,
                    thread_ts=card.ts,
                    file=chart,
                    filename="chart.png",
                    title=title,
                )
            except SlackApiError as error:
                if error.response.get("error") not in CHANNEL_FALLBACK_ERRORS:
                    raise
                if channel not in self._member_of:
                    log.info("cannot share the chart in %s: the bot is not a member", channel)
                    return False
                self._member_of.discard(channel)  # removed since it joined: try joining again
                continue
            self._member_of.add(channel)
            return True
        return False

    def _join(self, channel: str) -> bool:
        """Joins a public channel; False where Slack refuses (private, archived, no scope)."""
        try:
            self.client.conversations_join(channel=channel)
        except SlackApiError as error:
            log.info("cannot join %s (%s)", channel, error.response.get("error"))
            return False
        self._member_of.add(channel)
        return True

    def _log_tail(self, job_id: str) -> str:
        with session_scope(self.engine) as session:
            lines = queries.list_events(session, job_id=job_id, kinds=["log"])
        return "\n".join(e.message for e in lines[-FAILURE_LOG_LINES:])

    # -- plumbing ----------------------------------------------------------------------------------

    def _write(self, channel: str, call: Any, /, **kwargs: Any) -> Any:
        wait = self._last_write.get(channel, 0.0) + self.channel_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        try:
            return call(**kwargs)
        finally:
            self._last_write[channel] = time.monotonic()

    def _snapshot_and_place(self, job_id: str) -> tuple[JobSnapshot, str, str]:
        with session_scope(self.engine) as session:
            job = queries.get_job(session, job_id=job_id)
            if job is None:
                raise LookupError(job_id)
            snap = load_snapshot(session, job)
        return snap, job.channel_id or job.requested_by, job.requested_by
