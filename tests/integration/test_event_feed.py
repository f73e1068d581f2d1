"""The SQL a follower of job_events stands on: one lease holder at a time, a cursor only the
holder moves, and events read in id order, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.engine import Engine

from bot.feed_position import FeedPosition
from storage import event_feed, queries
from storage.db import session_scope
from storage.models import utcnow

NAME = event_feed.NOTIFIER_CURSOR


def _job(engine: Engine) -> str:
    with session_scope(engine) as session:
        return queries.create_job(session, name="m", dataset_source="iris").id


def _event(engine: Engine, job_id: str, message: str) -> int:
    with session_scope(engine) as session:
        event = queries.add_event(
            session, job_id=job_id, kind="warning", stage="job", message=message
        )
        assert event.id is not None
        return event.id


def test_one_holder_at_a_time_and_a_lapsed_lease_is_taken_over(engine: Engine) -> None:
    now = utcnow()
    with session_scope(engine) as session:
        assert event_feed.take_lease(session, name=NAME, holder="a", now=now, seconds=10)
    with session_scope(engine) as session:
        assert event_feed.take_lease(session, name=NAME, holder="b", now=now, seconds=10) is None
        assert event_feed.take_lease(session, name=NAME, holder="a", now=now, seconds=10)
        assert event_feed.advance_cursor(session, name=NAME, holder="a", last_event_id=7)
        assert not event_feed.advance_cursor(session, name=NAME, holder="b", last_event_id=9)
    later = now + timedelta(seconds=11)  # a's lease lapsed: it stopped renewing
    with session_scope(engine) as session:
        lease = event_feed.take_lease(session, name=NAME, holder="b", now=later, seconds=10)
    assert lease is not None and lease.last_event_id == 7
    with session_scope(engine) as session:
        assert not event_feed.advance_cursor(session, name=NAME, holder="a", last_event_id=8)
        assert event_feed.advance_cursor(session, name=NAME, holder="b", last_event_id=5)
        cursor = event_feed.get_cursor(session, name=NAME)
        assert cursor is not None and cursor.last_event_id == 7  # never back
        event_feed.release_lease(session, name=NAME, holder="b")
    with session_scope(engine) as session:  # released: taken at once, no lapse needed
        assert event_feed.take_lease(session, name=NAME, holder="c", now=later, seconds=10)


def test_a_new_cursor_starts_after_the_history_and_reads_in_order(engine: Engine) -> None:
    job = _job(engine)
    old = _event(engine, job, "before the notifier existed")
    with session_scope(engine) as session:
        assert event_feed.ensure_cursor(session, name=NAME).last_event_id == old
    ids = [_event(engine, job, f"e{i}") for i in range(5)]
    with session_scope(engine) as session:
        read = event_feed.events_after(session, after_id=old, limit=3)
        assert [e.id for e in read] == ids[:3]
        assert [e.id for e in event_feed.events_with_ids(session, ids=[ids[4], ids[1]])] == [
            ids[1],
            ids[4],
        ]


def test_an_id_that_commits_after_a_higher_one_is_not_skipped(postgres_engine: Engine) -> None:
    # Only PostgreSQL commits sequence ids out of order; SQLite's writers take turns.
    postgres = postgres_engine
    job = _job(postgres)
    with session_scope(postgres) as session:
        start = event_feed.ensure_cursor(session, name=NAME).last_event_id
    position = FeedPosition(start, grace=30.0)
    handed: list[int] = []

    def follow() -> None:
        with session_scope(postgres) as session:
            events = event_feed.events_after(session, after_id=position.read_upto, limit=50)
        handed.extend(position.accept(e.id for e in events if e.id is not None))

    with session_scope(postgres) as slow:
        low = queries.add_event(slow, job_id=job, kind="warning", stage="job", message="slow")
        high = _event(postgres, job, "fast")  # another transaction: commits first
        assert low.id is not None and low.id < high
        follow()
        assert handed == []  # `high` is visible, but `low` may still come
    follow()  # `slow` committed
    assert handed == [low.id, high]
