"""Keeps each Slack job's status card and thread current by following `job_events` in the
database, so cards move whichever process runs the job.

One follower thread per process; only the holder of the cursor's lease sends (compare-and-set
in storage.event_feed), so with several web processes each event reaches Slack once, and a
standby takes over when the holder's lease lapses. The follower wakes on PostgreSQL's NOTIFY
(storage.notify) or after `poll_seconds`, reads the events after its position in id order and
hands each to its channel's lane (bot.slack_lanes). The cursor moves past an event only once
its Slack writes are done or have definitively failed, so a restarted notifier carries on where
it stopped. A SIGKILL can repeat the few events that were being written at that moment: Slack
has them, the cursor does not yet.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.engine import Engine

from bot.feed_position import FeedPosition
from bot.job_messages import JobMessenger, Outcome, is_outcome
from bot.slack_budget import MethodBudget
from bot.slack_lanes import ChannelPacer, Deferred, Lanes
from pipeline.events import EventKind
from storage import event_feed
from storage.db import session_scope
from storage.models import JobEvent, TrainingJob
from storage.notify import EVENTS_CHANNEL, Wakeup

log = logging.getLogger(__name__)

# The Slack client of a job's workspace; None: that workspace is no longer installed.
ClientFor = Callable[[str | None, str | None], WebClient | None]

BATCH = 200
# Events handed to lanes and not yet done; past this, reading pauses. Most cost no write (a
# progress event only marks its card), but wait in their lane behind those that do: a few
# thousand jobs' worth, so a busy channel does not keep another job's outcome unread.
MAX_IN_FLIGHT = 20_000
# Seconds an event waited in its channel's lane past which the channel is busy: its finished
# stages then wait for the job's outcome reply instead of a late reply each. A lone job's
# bursts of events wait a few seconds at most; twenty jobs' cards alone take twenty.
BUSY_LAG_SECONDS = 10.0
SAVE_SECONDS = 0.2  # while events are in flight, the cursor is saved at least this often
NETWORK_ATTEMPTS = 3  # an event whose writes fail without an answer from Slack is tried again


class SlackNotifier:
    def __init__(
        self,
        engine: Engine,
        client_for: ClientFor,
        *,
        poll_seconds: float = 5.0,
        listen: bool = True,
        lease_seconds: float = 30.0,
        channel_interval: float = 1.0,
        card_interval: float = 1.0,
        gap_grace: float = 5.0,
        extend_hours: float = 1.0,
        cursor: str = event_feed.NOTIFIER_CURSOR,
        budget: MethodBudget | None = None,
        busy_lag: float = BUSY_LAG_SECONDS,
        owns_engine: bool = False,
    ) -> None:
        self.engine = engine
        self.client_for = client_for
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.gap_grace = gap_grace
        self.cursor = cursor
        self.busy_lag = busy_lag
        self.owns_engine = owns_engine  # closed on stop
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.messenger = JobMessenger(
            engine,
            ChannelPacer(channel_interval),
            card_interval=card_interval,
            extend_hours=extend_hours,
            budget=budget,
        )
        self.lanes = Lanes(self.messenger.flush_due)
        self._wakeup = Wakeup(engine, EVENTS_CHANNEL, listen=listen)
        self._position: FeedPosition | None = None  # set while this process holds the lease
        self._renew_at = 0.0
        self._lane_of: dict[str, str] = {}  # job id -> its lane, for as long as it lives
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slack-notifier", daemon=True)

    @property
    def holding(self) -> bool:
        return self._position is not None

    def start(self) -> None:
        # The cursor exists before any request is taken: a job submitted now is after it.
        with session_scope(self.engine) as session:
            event_feed.ensure_cursor(session, name=self.cursor)
        self._wakeup.start()
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Sends what is stored and pending (within `timeout`), saves the cursor, and gives
        the lease up so a standby takes over at once."""
        self._stopping.set()
        self._wakeup.wake()
        self._thread.join(timeout)
        self.lanes.close(timeout=5)
        self._wakeup.stop()
        if self.owns_engine:
            self.engine.dispose()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once every stored event has been handled and saved, by this process or the
        lease holder, and no card edit of this process is pending."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with session_scope(self.engine) as session:
                latest = event_feed.latest_event_id(session)
                cursor = event_feed.get_cursor(session, name=self.cursor)
            caught_up = cursor is not None and cursor.last_event_id >= latest
            if caught_up and self.lanes.idle() and not self.messenger.editing():
                return True
            self._wakeup.wake()
            time.sleep(0.05)
        return False

    # -- the follower thread ---------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            more = False
            try:
                more = self._step()
            except Exception:  # noqa: BLE001 - a database hiccup must not end the follower
                log.exception("could not follow the job events")
            if not more:
                self._wakeup.wait(self._wait_seconds())
        try:
            self._finish()
        except Exception:  # noqa: BLE001
            log.exception("could not save the notifier's cursor on stop")

    def _step(self) -> bool:
        """One round: keep the lease, save progress, hand out new events. True: read again."""
        if not self._keep_lease():
            return False
        position = self._position
        assert position is not None
        if not self._save(position):
            return False
        if position.in_flight >= MAX_IN_FLIGHT:
            return False
        with session_scope(self.engine) as session:
            events = event_feed.events_after(session, after_id=position.read_upto, limit=BATCH)
            taken = set(position.accept(e.id for e in events if e.id is not None))
            watched = position.watched()
            late = event_feed.events_with_ids(session, ids=watched) if watched else []
            taken |= set(position.accept_late(e.id for e in late if e.id is not None))
            ready = sorted((e for e in [*late, *events] if e.id in taken), key=_event_id)
            jobs = event_feed.jobs_by_id(session, job_ids={e.job_id for e in ready})
        clients: dict[tuple[str | None, str | None], WebClient | None] = {}
        for event in ready:
            self._dispatch(position, event, jobs.get(event.job_id), clients)
        return len(events) == BATCH and len(taken) > 0

    def _dispatch(
        self,
        position: FeedPosition,
        event: JobEvent,
        job: TrainingJob | None,
        clients: dict[tuple[str | None, str | None], WebClient | None],
    ) -> None:
        event_id = _event_id(event)
        # Output lines reach Slack only as a summary, on failure or via /train logs; jobs
        # from the CLI or the HTTP API have no card.
        if event.kind == EventKind.LOG or job is None or job.origin != "slack":
            position.done(event_id)
            return
        workspace = (job.team_id, job.enterprise_id)
        if workspace not in clients:
            clients[workspace] = self.client_for(*workspace)
        client = clients[workspace]
        if client is None:  # the workspace uninstalled the app: nobody to tell
            position.done(event_id)
            return
        lane = self._lane_of.setdefault(job.id, _channel_of(job))
        team = job.team_id or ""  # whose rate limits the writes count against
        if is_outcome(event):
            # Before anything else in its lane: what the person is waiting for.
            done = functools.partial(position.done, event_id)
            self.messenger.expect_outcome(lane, Outcome(event, client, team, done))
            work = functools.partial(self._send_outcomes, position, lane)
            self.lanes.submit(lane, job.id, work, urgent=True)
            return
        queued_at = time.monotonic()
        self.lanes.submit(
            lane, job.id, lambda: self._show(position, event, client, team, queued_at)
        )

    def _send_outcomes(self, position: FeedPosition, lane: str) -> None:
        if self._position is not position:
            return  # the lease was lost meanwhile: the new holder sends them

        def later(job_id: str, work: Callable[[], None]) -> None:
            self.lanes.submit(lane, job_id, work)

        self.messenger.send_outcomes(lane, later)

    def _show(
        self,
        position: FeedPosition,
        event: JobEvent,
        client: WebClient,
        workspace: str,
        queued_at: float,
    ) -> None:
        if self._position is not position:
            return  # the lease was lost meanwhile: the new holder sends this one
        busy = time.monotonic() - queued_at >= self.busy_lag
        deferred = False
        try:
            for attempt in range(1, NETWORK_ATTEMPTS + 1):
                try:
                    self.messenger.show(event, client, workspace=workspace, busy=busy)
                    return
                except Deferred:
                    deferred = True
                    raise  # the lane tries it again when the rate limit's window has room
                except SlackApiError as error:  # Slack answered: trying again changes nothing
                    log.warning(
                        "Slack refused an update of job %s (%s event %s): %s",
                        event.job_id,
                        event.kind,
                        event.id,
                        error.response.get("error"),
                    )
                    return
                except OSError as error:  # no answer (the client already retried)
                    if attempt == NETWORK_ATTEMPTS or self._stopping.wait(2.0**attempt):
                        log.warning("gave up on event %s after %s", event.id, error)
                        return
        finally:
            if not deferred:
                position.done(_event_id(event))

    def _keep_lease(self) -> bool:
        if self._position is not None and time.monotonic() < self._renew_at:
            return True
        with session_scope(self.engine) as session:
            lease = event_feed.take_lease(
                session,
                name=self.cursor,
                holder=self.holder,
                now=datetime.now(UTC),
                seconds=self.lease_seconds,
            )
        if lease is None:
            if self._position is not None:
                self._lose_lease()
            return False
        self._renew_at = time.monotonic() + self.lease_seconds / 3
        if self._position is None:
            log.info("following job events from %d (%s)", lease.last_event_id, self.holder)
            self._position = FeedPosition(lease.last_event_id, grace=self.gap_grace)
            self._adopt_open_cards()
        return True

    def _adopt_open_cards(self) -> None:
        """Cards of jobs still moving get a refresh: the last holder may have coalesced an
        edit it never sent."""
        with session_scope(self.engine) as session:
            jobs = event_feed.jobs_with_open_cards(session)
        for job in jobs:
            client = self.client_for(job.team_id, job.enterprise_id)
            if client is None or not job.card_channel_id or not job.card_ts:
                continue
            self.messenger.adopt(
                job.id, client, job.card_channel_id, job.card_ts, workspace=job.team_id or ""
            )
            self.lanes.submit(self._lane_of.setdefault(job.id, _channel_of(job)), job.id)

    def _lose_lease(self) -> None:
        log.warning("another process took over the Slack notifications (%s)", self.holder)
        self._position = None
        self.lanes.clear()
        self.messenger.drop_outcomes()

    def _save(self, position: FeedPosition) -> bool:
        with session_scope(self.engine) as session:
            kept = event_feed.advance_cursor(
                session, name=self.cursor, holder=self.holder, last_event_id=position.saved_upto
            )
        if not kept:
            self._lose_lease()
        return kept

    def _wait_seconds(self) -> float:
        position = self._position
        if position is None:  # a standby looks again well before a lapsed lease is old
            return min(self.poll_seconds, self.lease_seconds / 3)
        wait = min(self.poll_seconds, max(0.0, self._renew_at - time.monotonic()))
        if position.in_flight:
            wait = min(wait, SAVE_SECONDS)
        gap = position.gap_wait()
        if gap is not None:
            wait = min(wait, gap + 0.01)
        return wait

    def _finish(self) -> None:
        """On stop: hand out what is stored, let the lanes write it, save, release."""
        deadline = time.monotonic() + 10.0
        while self._position is not None and time.monotonic() < deadline:
            more = self._step()
            position = self._position
            settled = (
                position is not None
                and position.in_flight == 0
                and self.lanes.idle()
                and not self.messenger.editing()
            )
            if settled and not more:
                break
            time.sleep(0.05)
        if self._position is not None:
            self._save(self._position)
            with session_scope(self.engine) as session:
                event_feed.release_lease(session, name=self.cursor, holder=self.holder)
            self._position = None
            # What is left (work waiting for a rate limit) is the next holder's to send.
            self.lanes.clear()
            self.messenger.drop_outcomes()


def _channel_of(job: TrainingJob) -> str:
    """The lane a job's messages go through: its card's channel, or where it will be posted."""
    return job.card_channel_id or job.channel_id or job.requested_by


def _event_id(event: JobEvent) -> int:
    assert event.id is not None
    return event.id
