"""The chart reaches the job's thread wherever Slack lets the bot share it; where it cannot,
the thread says what to do. The notifier runs against the fake Slack with the manifest's scopes,
which refuses file shares outside the channels the bot is a member of."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot.manifest import BOT_SCOPES
from bot.notifier import SlackNotifier
from bot.settings import SlackSettings
from bot.slack_client import build_web_client
from pipeline.events import EventKind
from storage import queries
from storage.db import session_scope
from storage.models import utcnow
from storage.states import RUNNING_STAGES
from tests.fakes.slack_api import FakeSlack

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
INVITE = "invite @TrainBot"


@contextmanager
def running_notifier(engine: Engine, fake: FakeSlack) -> Iterator[SlackNotifier]:
    fake.per_channel_interval = 0  # these tests are about membership, not pacing
    slack = SlackSettings(SLACK_BOT_TOKEN=fake.token, SLACK_API_URL=fake.api_url)
    client = build_web_client(slack)
    notifier = SlackNotifier(
        engine, lambda team, enterprise: client, channel_interval=0, card_interval=0
    )
    notifier.start()
    try:
        yield notifier
    finally:
        notifier.stop()


def live_job(engine: Engine, tmp_path: Path, channel: str) -> str:
    """A Slack job from `channel` that has just gone live with a chart, as the runner leaves it."""
    chart = tmp_path / f"chart-{channel}-{len(list(tmp_path.iterdir()))}.png"
    chart.write_bytes(PNG)
    with session_scope(engine) as session:
        job = queries.create_job(
            session,
            name="Chart model",
            dataset_source="iris",
            requested_by="U1",
            channel_id=channel,
            origin="slack",
        )
        for status in RUNNING_STAGES:
            queries.transition(session, job_id=job.id, to=status)
        queries.mark_live(
            session,
            job_id=job.id,
            url="https://apps.example.com/chart/",
            expires_at=utcnow() + timedelta(hours=1),
        )
        queries.update_job(
            session,
            job_id=job.id,
            task_type="classification",
            artifacts={"chart.png": str(chart)},
        )
        return job.id


def go_live(notifier: SlackNotifier, job_id: str) -> None:
    """The runner's last event, stored as the runner stores it; the notifier follows."""
    with session_scope(notifier.engine) as session:
        queries.add_event(
            session,
            job_id=job_id,
            kind=EventKind.FINISHED.value,
            stage="job",
            message="The app is live",
            data={"status": "live"},
        )
    assert notifier.wait_idle(30), "the notifier did not catch up"


def thread_of(engine: Engine, fake: FakeSlack, job_id: str) -> tuple[str, str, list[str]]:
    """The card's channel and ts, and the texts of its thread replies."""
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None and job.card_channel_id and job.card_ts
        channel, ts = job.card_channel_id, job.card_ts
    return channel, ts, [m["text"] for m in fake.replies(channel, ts)]


def charts_in(fake: FakeSlack, channel: str, ts: str) -> list[bytes]:
    return [u["content"] for u in fake.uploads if (u["channel"], u["thread_ts"]) == (channel, ts)]


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(scopes=BOT_SCOPES) as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.WARNING, logger="bot"):
        yield
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_the_bot_joins_a_public_channel_to_share_the_chart(
    sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    with running_notifier(sqlite_engine, fake) as notifier:
        first = live_job(sqlite_engine, tmp_path, "C1")
        go_live(notifier, first)
        channel, ts, replies = thread_of(sqlite_engine, fake, first)
        assert channel == "C1" and fake.is_member("C1")
        assert charts_in(fake, channel, ts) == [PNG]
        assert not any(INVITE in r for r in replies)

        # Joined once: the next chart in the channel goes straight in.
        second = live_job(sqlite_engine, tmp_path, "C1")
        go_live(notifier, second)
        _, ts2, _ = thread_of(sqlite_engine, fake, second)
        assert charts_in(fake, "C1", ts2) == [PNG]
        assert len(fake.calls_to("conversations.join")) == 1
    assert fake.rejections == []


def test_slack_not_the_cache_says_who_is_a_member(
    sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    with running_notifier(sqlite_engine, fake) as notifier:
        go_live(notifier, live_job(sqlite_engine, tmp_path, "C1"))
        fake.remove_bot("C1")  # someone removed the bot after the first chart
        job = live_job(sqlite_engine, tmp_path, "C1")
        go_live(notifier, job)
        _, ts, replies = thread_of(sqlite_engine, fake, job)
        assert charts_in(fake, "C1", ts) == [PNG]
        assert not any(INVITE in r for r in replies)
        assert len(fake.calls_to("conversations.join")) == 2


def test_a_refused_join_is_explained_in_the_thread(sqlite_engine: Engine, tmp_path: Path) -> None:
    # An app installed before channels:join was in the manifest: the join is refused.
    scopes = set(BOT_SCOPES) - {"channels:join"}
    with FakeSlack(scopes=scopes) as fake, running_notifier(sqlite_engine, fake) as notifier:
        job = live_job(sqlite_engine, tmp_path, "C1")
        go_live(notifier, job)
        channel, ts, replies = thread_of(sqlite_engine, fake, job)
        assert channel == "C1" and charts_in(fake, channel, ts) == []
        assert any("is live" in r for r in replies)
        [note] = [r for r in replies if INVITE in r]
        assert "chart" in note and "Traceback" not in note
        assert [c.params["channel"] for c in fake.calls_to("conversations.join")] == ["C1"]


def test_a_private_channel_the_bot_was_invited_to_gets_the_chart(
    sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    fake.add_channel("C0PRIVATE", private=True, member=True)
    with running_notifier(sqlite_engine, fake) as notifier:
        job = live_job(sqlite_engine, tmp_path, "C0PRIVATE")
        go_live(notifier, job)
        channel, ts, replies = thread_of(sqlite_engine, fake, job)
        assert channel == "C0PRIVATE" and charts_in(fake, channel, ts) == [PNG]
        assert not any(INVITE in r for r in replies)


def test_a_private_channel_closed_to_the_bot_gets_card_and_chart_by_dm(
    sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    fake.add_channel("C0SECRET", private=True)
    with running_notifier(sqlite_engine, fake) as notifier:
        job = live_job(sqlite_engine, tmp_path, "C0SECRET")
        go_live(notifier, job)
        channel, ts, replies = thread_of(sqlite_engine, fake, job)
        assert channel == "U1" and fake.messages("C0SECRET") == []
        assert charts_in(fake, channel, ts) == [PNG]
        assert any("is live" in r for r in replies)
