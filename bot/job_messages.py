"""What one job event looks like in Slack: the job's status card and the replies in its thread.

Called from the job's channel lane (bot.slack_lanes), so a job's card and thread are only ever
touched by one thread at a time. Every write goes through the channel pacer (about one message a
second a channel), and the tiered methods (chat.update, conversations.join, file uploads)
through the workspace's budget (bot.slack_budget), so a full window defers a write instead of
stalling the lane in 429 retries. Spending them wisely:

- A job's outcome (its live app or its failure) is sent first, before any other job's progress:
  the notifier hands it over as urgent work and `send_outcomes` sends it as the job's thread
  reply, with the Open live app button; when several outcomes of one channel wait, one roll-up
  message carries every one's button and their thread replies follow.
- Card edits are coalesced (at most one per `card_interval` a job), one a lane turn; an ended
  job's final edit goes before any moving job's, and progress edits leave chat.update slots to
  final edits. A moving card is refreshed now and then so its elapsed time stays true.
- In a crowded channel (its lane lags, or CROWDED_JOBS jobs move in it at once), a job's
  finished stages and training report get no reply of their own: the outcome's reply carries
  what the thread missed, and its card gets a few progress edits, then jumps to the outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy.engine import Engine

from bot import blocks
from bot.manifest import APP_NAME
from bot.slack_budget import MethodBudget
from bot.slack_lanes import ChannelPacer, Deferred, Work
from bot.snapshot import STAGE_TITLES, JobSnapshot, build_snapshot, load_snapshot
from pipeline.events import EventKind
from pipeline.limits import FAILURE_LOG_LINES
from pipeline.training_report import TrainingReport, report_of
from storage import event_feed, queries
from storage.db import session_scope
from storage.models import JobEvent
from storage.states import ACTIVE, TERMINAL, JobStatus, Stage

log = logging.getLogger(__name__)

CARD_POST_ATTEMPTS = 3
ELAPSED_REFRESH_SECONDS = 15.0
# The share of chat.update's slots (Tier 3: 50 a minute a workspace) that progress edits leave
# to final edits: an ended job's card shows its outcome and buttons; a moving card can wait.
KEPT_FOR_FINAL_EDITS = 0.4
CHART_METHODS = ("files.getUploadURLExternal", "files.completeUploadExternal")
MAX_STEPS = 12  # lines of missed stages and warnings an outcome reply lists
# A channel with this many jobs moving at once is crowded, as is one whose lane lags (the
# notifier's `busy`): each of its jobs then gets at most CROWDED_PROGRESS_WRITES stage replies
# and progress edits in all, its stages and training report wait for its outcome's reply, and
# its card jumps to the outcome. A crowded job costs about a dozen calls whatever its length:
# card, progress, outcome (and its share of a roll-up), chart, final edit.
CROWDED_JOBS = 5
CROWDED_PROGRESS_WRITES = 4
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
    workspace: str = ""  # whose rate limits its writes count against
    dirty: bool = False
    final: bool = False  # the job ended: this edit goes before any moving job's
    last_edit: float = 0.0
    active: bool = True  # queued or running: the elapsed time on the card moves
    stage_notes: dict[str, str] = field(default_factory=dict)
    replied: set[int] = field(default_factory=set)  # stage and warning events with a reply
    summed_upto: int = 0  # stages and warnings up to this event are in the outcome's reply
    crowded: bool = False  # once its channel was crowded (see CROWDED_JOBS)
    progress_writes: int = 0  # stage replies and progress edits sent
    report_shown: bool = False  # what training tried and learned is in the thread

    def may_show_progress(self) -> bool:
        return not self.crowded or self.progress_writes < CROWDED_PROGRESS_WRITES


@dataclass
class Outcome:
    """A job's end (its live app or its failure) waiting for its channel's lane; `done` is
    called once its writes are done or have failed for good."""

    event: JobEvent
    client: WebClient
    workspace: str
    done: Callable[[], None]


def is_outcome(event: JobEvent) -> bool:
    """The events a person waits for: the job failed, or its app is live."""
    if event.kind == EventKind.FAILED.value:
        return True
    return event.kind == EventKind.FINISHED.value and event.data.get("status") == LIVE


LIVE = JobStatus.LIVE.value


class JobMessenger:
    def __init__(
        self,
        engine: Engine,
        pacer: ChannelPacer,
        *,
        card_interval: float = 1.0,
        extend_hours: float = 1.0,
        budget: MethodBudget | None = None,
    ) -> None:
        self.engine = engine
        self.pacer = pacer
        self.card_interval = card_interval
        self.extend_hours = extend_hours
        self.budget = budget or MethodBudget()
        edits_per_minute = self.budget.per_minute.get("chat.update", 0)
        self._kept_for_finals = int(edits_per_minute * KEPT_FOR_FINAL_EDITS)
        self._cards: dict[str, _Card] = {}
        self._moving: dict[str, set[str]] = {}  # channel -> jobs whose cards are active
        self._outcomes: dict[str, list[Outcome]] = {}  # lane -> outcomes waiting for it
        self._outcomes_lock = threading.Lock()
        self._post_failures: dict[str, int] = {}
        # Channels this process saw the bot join or share into: it spares a join call, nothing
        # more. Slack is the truth (the bot can be removed at any time); see _share_chart.
        self._member_of: set[str] = set()

    # -- the lanes' side ------------------------------------------------------------------

    def show(
        self, event: JobEvent, client: WebClient, *, workspace: str = "", busy: bool = False
    ) -> None:
        """Everything `event` changes in Slack, written before this returns (or `Deferred`:
        a rate limit's window is full, try again later). `busy`: the channel's lane is
        backed up, so finished stages wait for the outcome's reply."""
        kind = EventKind(event.kind)
        card = self._card(event.job_id, client, workspace)
        if card is None or kind == EventKind.QUEUED:
            return  # the card is all a queued job shows (or it could not be posted)
        if is_outcome(event):  # the notifier sends these with send_outcomes; here, at once
            outcome = Outcome(event, client, workspace, done=lambda: None)
            self._outcome_reply(outcome, card, later=_now_or_never)
            return
        event_id = event.id or 0
        # Older than the outcome already sent (the outcome jumped the lane): its card and
        # thread have moved on, so it changes neither.
        stale = event_id <= card.summed_upto
        if not stale:
            card.crowded = card.crowded or busy or self._moving_in(card.channel) >= CROWDED_JOBS
            card.dirty = True
            self._follow_status(event, card)
        quiet = card.crowded or stale
        if kind == EventKind.PROGRESS:
            card.stage_notes[event.stage] = event.message
        elif kind == EventKind.FINISHED and event.stage in STAGE_TITLES:
            if not quiet:
                summary = card.stage_notes.get(event.stage, "done")
                title = STAGE_TITLES[event.stage]
                self._reply(card, blocks.stage_reply(event.stage, title, summary))
                card.replied.add(event_id)
                card.progress_writes += 1
            if event.stage == Stage.TRAIN.value and not quiet and not card.report_shown:
                self._training_report(card, event)
        elif kind == EventKind.WARNING:
            # Never held back: a warning is news, and the card does not show it.
            if event_id > card.summed_upto:
                self._reply(card, blocks.warning_reply(event.message))
                card.replied.add(event_id)
        elif kind == EventKind.EXPIRING:
            self._expiring(card, event)
        elif kind == EventKind.FINISHED:
            self._ended(card, event)

    def _follow_status(self, event: JobEvent, card: _Card) -> None:
        status = str(event.data.get("status") or "")
        if status in ENDED:
            self._set_active(event.job_id, card, False)
            card.final = True
        elif status in MOVING:  # e.g. handed back to the queue by a stopping worker
            self._set_active(event.job_id, card, True)

    # -- outcomes ---------------------------------------------------------------------------

    def expect_outcome(self, lane: str, outcome: Outcome) -> None:
        """Holds `outcome` for `send_outcomes(lane)` (called from the notifier's thread)."""
        with self._outcomes_lock:
            self._outcomes.setdefault(lane, []).append(outcome)

    def drop_outcomes(self) -> None:
        """Forgets the outcomes waiting (this process may no longer send)."""
        with self._outcomes_lock:
            self._outcomes.clear()

    def send_outcomes(self, lane: str, later: Callable[[str, Work], None]) -> None:
        """Sends the outcomes waiting for `lane`. One outcome of a channel is its thread's
        reply; several share one roll-up message in the channel with each one's button, and
        their thread replies follow as ordinary work (`later(job_id, work)`)."""
        with self._outcomes_lock:
            waiting = self._outcomes.pop(lane, [])
        by_channel: dict[str, list[tuple[Outcome, _Card]]] = {}
        deferred: list[float] = []
        for outcome in waiting:
            try:
                card = self._card(outcome.event.job_id, outcome.client, outcome.workspace)
            except Deferred as wait:  # its card waits for a rate limit: so does it
                self.expect_outcome(lane, outcome)
                deferred.append(wait.seconds)
                continue
            except Exception:  # noqa: BLE001 - one job's trouble must not lose the others'
                log.exception("could not find the card of job %s", outcome.event.job_id)
                card = None
            if card is None:
                outcome.done()
                continue
            by_channel.setdefault(card.channel, []).append((outcome, card))
        for channel, group in by_channel.items():
            if len(group) == 1:
                outcome, card = group[0]
                self._outcome_reply(outcome, card, later)
                continue
            self._rollup(channel, group)
            for outcome, card in group:
                later(
                    outcome.event.job_id,
                    lambda o=outcome, c=card: self._outcome_reply(o, c, later),  # type: ignore[misc]
                )
        if deferred:
            raise Deferred(min(deferred))  # the lane calls again for those put back

    def _rollup(self, channel: str, group: list[tuple[Outcome, _Card]]) -> None:
        """One message with the group's buttons; whatever goes wrong, the thread replies
        still follow."""
        client = group[0][1].client
        try:
            snaps = self._outline(o.event.job_id for o, _ in group)
            for start in range(0, len(snaps), blocks.MAX_ROLLUP):
                message = blocks.outcomes_rollup(snaps[start : start + blocks.MAX_ROLLUP])
                if message is None:
                    continue
                self.pacer.write(
                    channel,
                    lambda m=message: client.chat_postMessage(  # type: ignore[misc]
                        channel=channel, **m.as_kwargs()
                    ),
                )
        except (SlackApiError, OSError) as error:
            log.warning("could not post the outcomes in %s: %s", channel, error)
        except Exception:  # noqa: BLE001 - a roll-up is a shortcut, never a loss
            log.exception("could not post the outcomes in %s", channel)

    def _outline(self, job_ids: Iterable[str]) -> list[JobSnapshot]:
        """What a roll-up shows of each job (name, status, link or reason), in one read of
        the jobs and one of their models' names: the buttons go out before anything slower."""
        wanted = list(job_ids)
        now = datetime.now(UTC)
        with session_scope(self.engine) as session:
            jobs = event_feed.jobs_by_id(session, job_ids=wanted)
            names = queries.model_names(session, model_ids=[job.model_id for job in jobs.values()])
        return [
            build_snapshot(
                job, model_name=names.get(job.model_id, job.short_id), events=[], now=now
            )
            for job in (jobs.get(job_id) for job_id in wanted)
            if job is not None
        ]

    def _outcome_reply(
        self, outcome: Outcome, card: _Card, later: Callable[[str, Work], None]
    ) -> None:
        try:
            chart = self._send_outcome(card, outcome.event)
        except (SlackApiError, OSError) as error:  # the card's final edit still shows it
            log.warning("could not reply the outcome of job %s: %s", outcome.event.job_id, error)
            outcome.done()
            return
        except Exception:  # noqa: BLE001 - never hold the feed's cursor on one reply
            log.exception("could not reply the outcome of job %s", outcome.event.job_id)
            outcome.done()
            return
        if chart is None:
            outcome.done()
            return
        later(outcome.event.job_id, lambda: self._chart_then_done(outcome, card, chart))

    def _send_outcome(self, card: _Card, event: JobEvent) -> JobSnapshot | None:
        """The outcome's thread reply, with what the thread missed; the live snapshot when a
        chart is to follow."""
        self._set_active(event.job_id, card, False)
        card.final = card.dirty = True
        snap, _, _ = self._snapshot_and_place(event.job_id)
        steps, report = self._held_back(card, event)
        if event.kind == EventKind.FAILED.value:
            detail = str(event.data.get("detail") or "") or self._log_tail(event.job_id)
            self._reply(card, blocks.failure_reply(snap, detail, steps=steps, report=report))
            return None
        if snap.status != LIVE:  # stopped or cancelled since: the event's own words
            self._reply(card, blocks.note_reply(event.message))
            return None
        self._reply(card, blocks.live_reply(snap, steps=steps, report=report))
        return snap

    def _chart_then_done(self, outcome: Outcome, card: _Card, snap: JobSnapshot) -> None:
        try:
            self._upload_chart(outcome.event.job_id, card, snap)
        except Deferred:
            raise  # tried again when the upload methods have room
        except (SlackApiError, OSError) as error:
            log.warning("could not share the chart of job %s: %s", outcome.event.job_id, error)
        except Exception:  # noqa: BLE001 - never hold the feed's cursor on one chart
            log.exception("could not share the chart of job %s", outcome.event.job_id)
        outcome.done()

    def _held_back(self, card: _Card, outcome: JobEvent) -> tuple[list[str], TrainingReport | None]:
        """Finished stages and warnings before `outcome` that got no reply of their own, and
        the training report if the thread has none (the channel was crowded), from the stored
        events: another process may have shown some."""
        upto = outcome.id or 0
        with session_scope(self.engine) as session:
            events = queries.list_events(
                session, job_id=outcome.job_id, kinds=["progress", "finished", "warning"]
            )
        card.summed_upto = max(card.summed_upto, upto)
        notes: dict[str, str] = {}
        steps: list[str] = []
        for event in events:
            if event.id is None or event.id >= upto:
                break
            if event.kind == EventKind.PROGRESS.value:
                notes[event.stage] = event.message
            elif event.id in card.replied:
                continue
            elif event.kind == EventKind.FINISHED.value and event.stage in STAGE_TITLES:
                steps.append(f"✓ {STAGE_TITLES[event.stage]} — {notes.get(event.stage, 'done')}")
            elif event.kind == EventKind.WARNING.value:
                steps.append(f"⚠️ {event.message}")
        report = None
        if not card.report_shown:
            progress = [e for e in events if e.kind == EventKind.PROGRESS.value]
            report = report_of(e for e in progress if e.id is not None and e.id < upto)
            card.report_shown = True
        return steps[-MAX_STEPS:], report

    # -- the tick ---------------------------------------------------------------------------

    def flush_due(self, job_ids: set[str]) -> float | None:
        """Sends one due card edit of `job_ids` (an ended job's first); the seconds until the
        next is due (0: another is due now; None: no card of them is waiting or ticking)."""
        now = time.monotonic()
        next_due: float | None = None
        due_now: list[tuple[tuple[bool, float], str, _Card]] = []
        for job_id in job_ids:
            card = self._cards.get(job_id)
            if card is None:
                continue
            if not card.final and not card.may_show_progress():
                card.dirty = False  # its card jumps to the outcome (see CROWDED_JOBS)
                continue
            # A running job's card also ticks now and then, so its elapsed time stays true.
            if card.active and now - card.last_edit >= ELAPSED_REFRESH_SECONDS:
                card.dirty = True
            if card.dirty:
                due = card.last_edit + self.card_interval - now
            elif card.active:
                due = card.last_edit + ELAPSED_REFRESH_SECONDS - now
            else:
                continue
            if due <= 0 and card.dirty:
                due_now.append(((not card.final, card.last_edit), job_id, card))
            else:
                next_due = _sooner(next_due, due)
        if not due_now:
            return next_due
        due_now.sort(key=lambda entry: entry[0])
        _, job_id, card = due_now[0]
        keep = 0 if card.final else self._kept_for_finals
        wait = self.budget.take(card.workspace, ["chat.update"], keep=keep)
        if wait > 0:
            return _sooner(next_due, wait)
        if not card.final:
            card.progress_writes += 1
        try:
            self._edit_card(job_id, card)
        except SlackApiError as error:
            log.warning("could not edit the card of job %s: %s", job_id, _code(error))
            card.dirty = False
        except OSError as error:  # no answer: the card stays dirty and is tried again
            log.warning("could not edit the card of job %s: %s", job_id, error)
        except LookupError:  # the job is gone: nothing left to show
            card.dirty = False
        except Exception:  # noqa: BLE001 - tried again later; the lane's other cards go on
            log.exception("could not edit the card of job %s", job_id)
        return 0.0 if len(due_now) > 1 else _sooner(next_due, self.card_interval)

    def adopt(
        self, job_id: str, client: WebClient, channel: str, ts: str, workspace: str = ""
    ) -> None:
        """A card posted before (by this process or another) of a moving job: refresh it
        soon."""
        if job_id not in self._cards:
            self._keep(job_id, _Card(client, channel, ts, workspace=workspace, dirty=True))

    def editing(self) -> bool:
        """True while some card edit is waiting to be sent."""
        return any(card.dirty for card in list(self._cards.values()))

    # -- what each kind of event says -------------------------------------------------------

    def _ended(self, card: _Card, event: JobEvent) -> None:
        """Cancelled, stopped or expired: the card's final edit comes with the tick."""
        self._set_active(event.job_id, card, False)
        card.final = True
        if event.data.get("status") == JobStatus.CANCELLED.value:
            self._reply(card, blocks.cancelled_reply(str(event.data.get("by") or "")))
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
            card.report_shown = True

    def _expiring(self, card: _Card, event: JobEvent) -> None:
        try:
            ends = datetime.fromisoformat(str(event.data.get("expires_at")))
        except ValueError:
            log.warning("expiring event %s has no valid expires_at", event.id)
            return
        self._reply(card, blocks.expiry_notice(event.job_id, ends, self.extend_hours))

    # -- cards ------------------------------------------------------------------------------

    def _card(self, job_id: str, client: WebClient, workspace: str) -> _Card | None:
        """The job's card; posts it now if it was not yet (or posting failed before)."""
        card = self._cards.get(job_id)
        if card is not None:
            return card
        with session_scope(self.engine) as session:
            job = queries.get_job(session, job_id=job_id)
        if job is None:
            return None
        if job.card_ts and job.card_channel_id:
            active = job.status in MOVING
            card = _Card(client, job.card_channel_id, job.card_ts, workspace, active=active)
            return self._keep(job_id, card)
        failures = self._post_failures.get(job_id, 0)
        if failures >= CARD_POST_ATTEMPTS:
            return None
        try:
            return self._post_card(job_id, client, workspace)
        except SlackApiError as error:
            self._post_failures[job_id] = failures + 1
            log.warning(
                "could not post the card of job %s (attempt %d): %s",
                job_id,
                failures + 1,
                _code(error),
            )
            return None

    def _post_card(self, job_id: str, client: WebClient, workspace: str) -> _Card:
        snap, job_channel, user = self._snapshot_and_place(job_id)
        message = blocks.job_card(snap)
        response = self._post_with_fallback(client, workspace, job_channel, user, message, snap)
        card = _Card(
            client, response["channel"], response["ts"], workspace, last_edit=time.monotonic()
        )
        self._keep(job_id, card)
        with session_scope(self.engine) as session:
            queries.update_job(
                session, job_id=job_id, card_channel_id=card.channel, card_ts=card.ts
            )
        return card

    def _post_with_fallback(
        self,
        client: WebClient,
        workspace: str,
        channel: str,
        user: str,
        message: blocks.Message,
        snap: JobSnapshot,
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
        if self._join(client, workspace, channel):
            try:
                return post(channel)
            except SlackApiError:
                pass
        log.info(
            "cannot post in %s; sending job %s to <@%s> directly", channel, snap.short_id, user
        )
        return post(user)

    def _edit_card(self, job_id: str, card: _Card) -> None:
        """The card as the job is now; its chat.update slot was taken by the caller."""
        wait = card.last_edit + self.card_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # only this channel's lane waits
        try:
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
            # Clean only once sent: `editing()` (other threads) must see it until then. Only
            # this lane's thread changes the card, so nothing newer came meanwhile.
            card.dirty = card.final = False
        finally:
            self.budget.stamp(card.workspace, "chat.update")
            card.last_edit = time.monotonic()

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
                # Refused for private channels; the share tells.
                self._join(card.client, card.workspace, channel)
            try:
                self._spend(
                    card.workspace,
                    CHART_METHODS,
                    lambda: self.pacer.write(
                        channel,
                        lambda: card.client.files_upload_v2(
                            channel=channel,
                            thread_ts=card.ts,
                            file=chart,
                            filename="chart.png",
                            title=title,
                        ),
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

    def _join(self, client: WebClient, workspace: str, channel: str) -> bool:
        """Joins a public channel; False where Slack refuses (private, archived, no scope)."""
        try:
            self._spend(
                workspace,
                ["conversations.join"],
                lambda: client.conversations_join(channel=channel),
            )
        except SlackApiError as error:
            log.info("cannot join %s (%s)", channel, _code(error))
            return False
        self._member_of.add(channel)
        return True

    def _keep(self, job_id: str, card: _Card) -> _Card:
        self._cards[job_id] = card
        self._set_active(job_id, card, card.active)
        return card

    def _set_active(self, job_id: str, card: _Card, active: bool) -> None:
        """Queued or running (its elapsed time moves), counted in its channel's crowd."""
        card.active = active
        moving = self._moving.setdefault(card.channel, set())
        if active:
            moving.add(job_id)
        else:
            moving.discard(job_id)

    def _moving_in(self, channel: str) -> int:
        """Jobs of `channel` this process has cards of that are queued or running."""
        return len(self._moving.get(channel, ()))

    def _spend(self, workspace: str, methods: Sequence[str], call: Callable[[], Any]) -> Any:
        """Makes `call` with a slot of each of its tiered `methods`, or raises `Deferred`."""
        wait = self.budget.take(workspace, methods)
        if wait > 0:
            raise Deferred(wait)
        try:
            return call()
        finally:
            for method in methods:
                self.budget.stamp(workspace, method)

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


def _now_or_never(job_id: str, work: Work) -> None:
    """Runs follow-up work at once; work that would wait for a rate limit is left out."""
    try:
        work()
    except Deferred:
        log.info("left out a deferred follow-up of job %s", job_id)


def _sooner(a: float | None, b: float) -> float:
    return b if a is None else min(a, b)


def _code(error: SlackApiError) -> str:
    return str(error.response.get("error"))
