"""The Slack notifier follows job_events in the database: events written by another engine (a
worker process) reach the fake Slack Web API exactly once, with two notifiers running, across a
restart, woken by NOTIFY on PostgreSQL or by the poll alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from bot.notifier import SlackNotifier
from bot.settings import SlackSettings
from bot.slack_client import build_web_client
from storage import queries
from storage.db import make_engine, session_scope
from tests.fakes.slack_api import FakeSlack


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(per_channel_interval=0) as fake:
        yield fake


def other_engine(engine: Engine) -> Engine:
    """Another connection pool to the same database, as another process has."""
    return make_engine(engine.url.render_as_string(hide_password=False))


@contextmanager
def notifier(engine: Engine, fake: FakeSlack, **options: Any) -> Iterator[SlackNotifier]:
    slack = SlackSettings(SLACK_BOT_TOKEN=fake.token, SLACK_API_URL=fake.api_url)
    client = build_web_client(slack)
    options = {"poll_seconds": 0.2, "lease_seconds": 2.0, **options}
    follower = SlackNotifier(
        other_engine(engine),
        lambda team, enterprise: client,
        channel_interval=0,
        card_interval=0,
        **options,
    )
    follower.start()
    try:
        yield follower
    finally:
        follower.stop()
        follower.engine.dispose()


def slack_job(engine: Engine, channel: str) -> str:
    with session_scope(engine) as session:
        return queries.create_job(
            session,
            name=f"Model in {channel}",
            dataset_source="iris",
            requested_by="U1",
            channel_id=channel,
            origin="slack",
        ).id


def warn(engine: Engine, job_id: str, message: str) -> None:
    with session_scope(engine) as session:
        queries.add_event(session, job_id=job_id, kind="warning", stage="job", message=message)


def thread(engine: Engine, fake: FakeSlack, job_id: str) -> list[str]:
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None and job.card_channel_id and job.card_ts
    return [m["text"] for m in fake.replies(job.card_channel_id, job.card_ts)]


def cards(fake: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [m for m in fake.messages(channel) if m["thread_ts"] is None]


def wait_for(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_two_notifiers_send_each_event_exactly_once(engine: Engine, fake: FakeSlack) -> None:
    writer = other_engine(engine)
    with notifier(engine, fake) as first, notifier(engine, fake) as second:
        jobs = [slack_job(writer, channel) for channel in ("C1", "C2", "C1")]
        for i in range(5):
            for job in jobs:
                warn(writer, job, f"step {i}")
        assert first.wait_idle() and second.wait_idle()
        assert [first.holding, second.holding].count(True) == 1
        for job in jobs:
            assert thread(engine, fake, job) == [f"⚠️ step {i}" for i in range(5)]
        assert len(cards(fake, "C1")) == 2 and len(cards(fake, "C2")) == 1

        # The holder stops (a deploy): the standby takes over and carries on.
        holder, standby = (first, second) if first.holding else (second, first)
        holder.stop()
        warn(writer, jobs[1], "after the deploy")
        assert standby.wait_idle()
        assert standby.holding
        assert thread(engine, fake, jobs[1])[-2:] == ["⚠️ step 4", "⚠️ after the deploy"]
    assert fake.rejections == []
    writer.dispose()


def test_a_restarted_notifier_repeats_nothing_and_loses_nothing(
    engine: Engine, fake: FakeSlack
) -> None:
    writer = other_engine(engine)
    job = slack_job(writer, "C1")
    with notifier(engine, fake) as follower:
        for i in range(3):
            warn(writer, job, f"before {i}")
        assert follower.wait_idle()
    for i in range(3):  # written while no notifier runs
        warn(writer, job, f"between {i}")
    with notifier(engine, fake) as follower:
        warn(writer, job, "after")
        assert follower.wait_idle()
    expected = [f"⚠️ before {i}" for i in range(3)] + [f"⚠️ between {i}" for i in range(3)]
    assert thread(engine, fake, job) == [*expected, "⚠️ after"]
    assert len(cards(fake, "C1")) == 1
    writer.dispose()


def test_the_poll_alone_delivers_with_listen_off(engine: Engine, fake: FakeSlack) -> None:
    writer = other_engine(engine)
    with notifier(engine, fake, listen=False, poll_seconds=0.3):
        job = slack_job(writer, "C1")
        warn(writer, job, "polled")
        wait_for(lambda: any(m["text"] == "⚠️ polled" for m in fake.messages("C1")), 10)
    writer.dispose()


def test_notify_wakes_the_notifier_long_before_its_poll(engine: Engine, fake: FakeSlack) -> None:
    if engine.dialect.name != "postgresql":
        return  # SQLite has no NOTIFY: the poll test above covers it
    writer = other_engine(engine)
    with notifier(engine, fake, poll_seconds=30.0) as follower:
        assert follower._wakeup.wait_listening(10)
        job = slack_job(writer, "C1")
        assert follower.wait_idle(10)  # the card: woken, or by wait_idle's own nudge
        time.sleep(0.3)  # let the follower settle into its 30 s wait
        start = time.monotonic()
        warn(writer, job, "woken")
        wait_for(lambda: any(m["text"] == "⚠️ woken" for m in fake.messages("C1")), 5)
        assert time.monotonic() - start < 1.0
    writer.dispose()
