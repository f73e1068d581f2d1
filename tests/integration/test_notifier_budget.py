"""The notifier spends Slack's rate limits wisely (issue 11): a job's outcome goes before other
jobs' progress in its channel, several outcomes waiting together share one roll-up message
with each one's button, progress edits leave chat.update slots to final edits so no edit meets
a 429, and a backed-up channel's finished stages are listed in the outcome's reply instead of
a late reply each. The notifier runs against the fake Slack, which paces each channel and
enforces the method tiers (tests.fakes.slack_tiers)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from bot.notifier import SlackNotifier
from bot.settings import SlackSettings
from bot.slack_budget import MethodBudget
from bot.slack_client import build_web_client
from pipeline.events import EventKind
from storage import queries
from storage.db import session_scope
from storage.models import utcnow
from storage.states import RUNNING_STAGES
from tests.fakes.slack_api import FakeSlack

PACE = 0.2  # seconds between two writes into one channel, the fake's and the notifier's


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack(per_channel_interval=PACE) as fake:
        yield fake


@contextmanager
def running_notifier(engine: Engine, fake: FakeSlack, **options: Any) -> Iterator[SlackNotifier]:
    slack = SlackSettings(SLACK_BOT_TOKEN=fake.token, SLACK_API_URL=fake.api_url)
    client = build_web_client(slack)
    notifier = SlackNotifier(
        engine,
        lambda team, enterprise: client,
        poll_seconds=0.1,
        channel_interval=PACE,
        card_interval=PACE,
        **options,
    )
    notifier.start()
    try:
        yield notifier
    finally:
        notifier.stop()


def new_job(engine: Engine, name: str, channel: str = "C1") -> str:
    with session_scope(engine) as session:
        return queries.create_job(
            session,
            name=name,
            dataset_source="iris",
            requested_by="U1",
            channel_id=channel,
            origin="slack",
        ).id


def url_of(job_id: str) -> str:
    return f"https://apps.example.com/{job_id}/"


def add_event(engine: Engine, job_id: str, kind: EventKind, stage: str, message: str) -> None:
    with session_scope(engine) as session:
        queries.add_event(session, job_id=job_id, kind=kind.value, stage=stage, message=message)


def go_live(engine: Engine, *job_ids: str) -> None:
    """The jobs go live in one transaction, as the runner leaves each (status, then event)."""
    with session_scope(engine) as session:
        for job_id in job_ids:
            for status in RUNNING_STAGES:
                queries.transition(session, job_id=job_id, to=status)
            queries.mark_live(
                session, job_id=job_id, url=url_of(job_id), expires_at=utcnow() + timedelta(hours=1)
            )
            queries.add_event(
                session,
                job_id=job_id,
                kind=EventKind.FINISHED.value,
                stage="job",
                message="The app is live",
                data={"status": "live"},
            )


def buttons_to(message: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "button" and node.get("url"):
                found.append(node["url"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(message.get("blocks"))
    return found


def card_of(engine: Engine, job_id: str) -> tuple[str, str]:
    with session_scope(engine) as session:
        job = queries.get_job(session, job_id=job_id)
        assert job is not None and job.card_channel_id and job.card_ts
        return job.card_channel_id, job.card_ts


def test_an_outcome_goes_before_other_jobs_progress_in_its_channel(
    sqlite_engine: Engine, fake: FakeSlack
) -> None:
    with running_notifier(sqlite_engine, fake) as notifier:
        busy = [new_job(sqlite_engine, f"Busy {n}") for n in range(4)]
        live = new_job(sqlite_engine, "Waited for")
        for n in range(6):
            for job_id in busy:
                add_event(sqlite_engine, job_id, EventKind.WARNING, "job", f"warning {n}")
        go_live(sqlite_engine, live)
        assert notifier.wait_idle(60)
    in_channel = fake.messages("C1")  # in the order posted
    [reply_at] = [
        i for i, m in enumerate(in_channel) if m["thread_ts"] and url_of(live) in buttons_to(m)
    ]
    warnings_after = [m for m in in_channel[reply_at:] if m["text"].startswith("⚠️ warning")]
    # 24 warnings were queued before it; the outcome jumped them (all but those being written).
    assert len(warnings_after) >= 20, [m["text"] for m in in_channel]
    assert fake.rejections == [] and fake.rate_limited == []


def test_outcomes_waiting_together_share_one_rollup_then_get_their_thread_replies(
    sqlite_engine: Engine, fake: FakeSlack
) -> None:
    with running_notifier(sqlite_engine, fake) as notifier:
        busy = new_job(sqlite_engine, "Busy")
        done = [new_job(sqlite_engine, f"Done {n}") for n in range(3)]
        for n in range(10):  # the lane is writing these when the three go live
            add_event(sqlite_engine, busy, EventKind.WARNING, "job", f"warning {n}")
        time.sleep(0.5)
        go_live(sqlite_engine, *done)
        assert notifier.wait_idle(60)
    top_level = [m for m in fake.messages("C1") if m["thread_ts"] is None and not m.get("metadata")]
    assert len(top_level) == 1, [m["text"] for m in top_level]
    [rollup] = top_level
    assert sorted(buttons_to(rollup)) == sorted(url_of(job_id) for job_id in done)
    for job_id in done:
        channel, ts = card_of(sqlite_engine, job_id)
        [reply] = [r for r in fake.replies(channel, ts) if "is live" in r["text"]]
        assert buttons_to(reply) == [url_of(job_id)]
        assert float(reply["ts"]) > float(rollup["ts"])  # the button came first, once
    assert fake.rejections == [] and fake.rate_limited == []


def test_progress_edits_leave_slots_to_final_edits_and_no_edit_meets_a_429(
    sqlite_engine: Engine,
) -> None:
    # Five card edits a minute: progress may take three, the last two are kept for the finals.
    with (
        FakeSlack(per_channel_interval=PACE, tier_limits={"chat.update": 5}) as fake,
        running_notifier(sqlite_engine, fake, budget=MethodBudget({"chat.update": 5})) as notifier,
    ):
        jobs = [new_job(sqlite_engine, f"Moving {n}") for n in range(2)]
        for n in range(6):
            for job_id in jobs:
                add_event(sqlite_engine, job_id, EventKind.PROGRESS, "train", f"fold {n}")
            time.sleep(PACE * 2)
        go_live(sqlite_engine, *jobs)
        assert notifier.wait_idle(30), "a final edit waited for the minute to pass"
    edits = fake.calls_to("chat.update")
    assert fake.tier_limited == [] and fake.rate_limited == []
    assert len(edits) == 5
    for job_id in jobs:
        channel, ts = card_of(sqlite_engine, job_id)
        [card] = [m for m in fake.messages(channel) if m["ts"] == ts]
        assert card["metadata"]["event_payload"]["status"] == "live"
        assert url_of(job_id) in buttons_to(card)


def test_a_backed_up_channel_lists_finished_stages_in_the_outcome_reply(
    sqlite_engine: Engine, fake: FakeSlack
) -> None:
    with running_notifier(sqlite_engine, fake, busy_lag=0.5) as notifier:
        busy = new_job(sqlite_engine, "Busy")
        job = new_job(sqlite_engine, "Late")
        for n in range(10):  # two seconds of writes ahead of the stages below
            add_event(sqlite_engine, busy, EventKind.WARNING, "job", f"warning {n}")
        for stage, note in (("resources", "0 of 0 fetched"), ("dataset", "iris, 150 rows")):
            add_event(sqlite_engine, job, EventKind.PROGRESS, stage, note)
            add_event(sqlite_engine, job, EventKind.FINISHED, stage, "done")
        add_event(sqlite_engine, job, EventKind.WARNING, "dataset", "dropped 2 rows")
        assert notifier.wait_idle(60)
        go_live(sqlite_engine, job)
        assert notifier.wait_idle(60)
    channel, ts = card_of(sqlite_engine, job)
    replies = fake.replies(channel, ts)
    texts = [r["text"] for r in replies]
    assert not any(t.startswith("✓") for t in texts), texts  # no late reply per stage
    assert "⚠️ dropped 2 rows" in texts  # a warning always gets its own
    [live] = [r for r in replies if "is live" in r["text"]]
    steps = json.dumps(live["blocks"], ensure_ascii=False)
    assert "✓ Reference resources — 0 of 0 fetched" in steps
    assert "✓ Data set — iris, 150 rows" in steps
    assert "dropped 2 rows" not in steps  # it had its reply


def test_a_crowded_channel_gets_its_stages_on_the_outcome_reply(
    sqlite_engine: Engine, fake: FakeSlack
) -> None:
    # Six jobs move at once in C1 (CROWDED_JOBS is five): the lane is not late, yet each job's
    # stages wait for its live reply instead of a reply each.
    with running_notifier(sqlite_engine, fake) as notifier:
        jobs = [new_job(sqlite_engine, f"Crowd {n}") for n in range(6)]
        for job_id in jobs:
            add_event(sqlite_engine, job_id, EventKind.STARTED, "resources", "fetching")
        assert notifier.wait_idle(60)
        for job_id in jobs:
            for stage, note in (("resources", "0 of 0 fetched"), ("dataset", "iris, 150 rows")):
                add_event(sqlite_engine, job_id, EventKind.PROGRESS, stage, note)
                add_event(sqlite_engine, job_id, EventKind.FINISHED, stage, "done")
        assert notifier.wait_idle(60)
        go_live(sqlite_engine, *jobs)
        assert notifier.wait_idle(60)
    for job_id in jobs:
        channel, ts = card_of(sqlite_engine, job_id)
        replies = fake.replies(channel, ts)
        assert not [r["text"] for r in replies if r["text"].startswith("✓")]
        [live] = [r for r in replies if "is live" in r["text"]]
        assert "✓ Data set — iris, 150 rows" in json.dumps(live["blocks"], ensure_ascii=False)
    assert fake.rejections == [] and fake.rate_limited == []
