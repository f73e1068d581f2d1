"""Following `job_events` from the database: the events after an id, a follower's cursor, and
the lease that lets one process at a time follow (the Slack notifier of one web process).

The cursor says "every event up to this id has been handled". Ids come from a sequence, and on
PostgreSQL a transaction that took id 10 can commit after one that took 11, so id 10 is not
visible yet when 11 is: the follower (bot.notifier) never moves past a missing id until it has
stayed missing for a grace time (`Gaps`). Ids of rolled-back inserts stay missing for ever;
the grace time is what they cost. On SQLite writers take turns, so ids commit in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, func, or_, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from storage.models import EventCursor, JobEvent, TrainingJob
from storage.states import ACTIVE

NOTIFIER_CURSOR = "slack-notifier"


@dataclass(frozen=True)
class Lease:
    """What a follower holds: the cursor's position when it took or renewed the lease."""

    holder: str
    last_event_id: int
    expires_at: datetime


def latest_event_id(session: Session) -> int:
    return int(session.exec(select(func.max(JobEvent.id))).one() or 0)


def ensure_cursor(session: Session, *, name: str) -> EventCursor:
    """The cursor `name`; a new one starts after the newest event, so a follower added to a
    database with history does not send that history again."""
    cursor = session.get(EventCursor, name)
    if cursor is not None:
        return cursor
    try:
        with session.begin_nested():
            cursor = EventCursor(name=name, last_event_id=latest_event_id(session))
            session.add(cursor)
    except IntegrityError:  # another process created it first: use theirs
        cursor = session.get(EventCursor, name)
        assert cursor is not None
    return cursor


def take_lease(
    session: Session, *, name: str, holder: str, now: datetime, seconds: float
) -> Lease | None:
    """Takes or renews the lease on `name` for `seconds`: only when nobody holds it, `holder`
    does already, or the holder's lease lapsed (compare-and-set, so two callers never both
    win). None: someone else holds it."""
    ensure_cursor(session, name=name)
    until = now + timedelta(seconds=seconds)
    result = session.execute(
        update(EventCursor)
        .where(
            col(EventCursor.name) == name,
            or_(
                col(EventCursor.holder).is_(None),
                col(EventCursor.holder) == holder,
                col(EventCursor.lease_expires_at).is_(None),
                col(EventCursor.lease_expires_at) < now,
            ),
        )
        .values(holder=holder, lease_expires_at=until)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    cursor = session.get(EventCursor, name, populate_existing=True)
    assert cursor is not None
    return Lease(holder=holder, last_event_id=cursor.last_event_id, expires_at=until)


def release_lease(session: Session, *, name: str, holder: str) -> None:
    """Gives the lease up at once, so a standby need not wait for it to lapse."""
    session.execute(
        update(EventCursor)
        .where(col(EventCursor.name) == name, col(EventCursor.holder) == holder)
        .values(holder=None, lease_expires_at=None)
    )


def advance_cursor(session: Session, *, name: str, holder: str, last_event_id: int) -> bool:
    """Moves the cursor forward (never back). False: `holder` no longer holds the lease, and
    must stop sending."""
    forward = case(
        (col(EventCursor.last_event_id) < last_event_id, last_event_id),
        else_=col(EventCursor.last_event_id),
    )
    result = session.execute(
        update(EventCursor)
        .where(col(EventCursor.name) == name, col(EventCursor.holder) == holder)
        .values(last_event_id=forward)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def get_cursor(session: Session, *, name: str) -> EventCursor | None:
    return session.get(EventCursor, name, populate_existing=True)


def events_after(session: Session, *, after_id: int, limit: int) -> list[JobEvent]:
    """The committed events with an id above `after_id`, in id order, at most `limit`."""
    query = (
        select(JobEvent).where(col(JobEvent.id) > after_id).order_by(col(JobEvent.id)).limit(limit)
    )
    return list(session.exec(query).all())


def events_with_ids(session: Session, *, ids: Iterable[int]) -> list[JobEvent]:
    """The events among `ids` that have committed by now, in id order."""
    wanted = sorted(set(ids))
    if not wanted:
        return []
    query = select(JobEvent).where(col(JobEvent.id).in_(wanted)).order_by(col(JobEvent.id))
    return list(session.exec(query).all())


def jobs_by_id(session: Session, *, job_ids: Iterable[str]) -> dict[str, TrainingJob]:
    wanted = set(job_ids)
    if not wanted:
        return {}
    jobs = session.exec(select(TrainingJob).where(col(TrainingJob.id).in_(wanted))).all()
    return {job.id: job for job in jobs}


def jobs_with_open_cards(session: Session, *, origin: str = "slack") -> list[TrainingJob]:
    """Jobs still queued or running whose card was posted: a follower that takes over
    refreshes them (an edit its predecessor had coalesced may never have been sent)."""
    query = select(TrainingJob).where(
        col(TrainingJob.origin) == origin,
        col(TrainingJob.status).in_([s.value for s in ACTIVE]),
        col(TrainingJob.card_ts).is_not(None),
    )
    return list(session.exec(query).all())
