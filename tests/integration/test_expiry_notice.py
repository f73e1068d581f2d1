"""Shortly before a live app stops, its thread gets a notice with an Extend button (from the
"expiring" event the worker stores); a click keeps the app up and says so in the thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot.ids import ActionId
from bot.manifest import BOT_SCOPES
from pipeline.events import EventKind
from storage import queries
from storage.db import session_scope
from storage.states import JobStatus
from tests.fakes.slack_api import FakeSlack
from tests.support.slack_bot import BotHarness, buttons, card_of, running_bot, wait_job
from tests.support.slack_payloads import block_action, train_form, view_submission


@pytest.fixture
def bot(sqlite_engine: Engine, tmp_path: Path) -> Iterator[BotHarness]:
    with FakeSlack(scopes=BOT_SCOPES) as fake, running_bot(sqlite_engine, tmp_path, fake) as bot:
        yield bot


def test_the_expiry_notice_offers_extend_and_a_click_extends(bot: BotHarness) -> None:
    bot.sender.command("", channel="C1", user="U1")
    view = bot.slack.wait_for(lambda: [v for v in bot.slack.views if v["method"] == "views.open"])
    bot.sender.interaction(
        view_submission(view[-1]["view"], train_form(name="Kept", dataset="iris"))
    )
    job = wait_job(bot)
    assert job.status == JobStatus.LIVE and job.expires_at is not None
    with session_scope(bot.engine) as session:  # what the worker's sweep stores
        queries.add_event(
            session,
            job_id=job.id,
            kind=EventKind.EXPIRING.value,
            stage="job",
            message="the app stops soon",
            data={"expires_at": job.expires_at.isoformat()},
        )
    bot.wait_idle()
    card = card_of(bot, job)
    notices = [
        m
        for m in bot.slack.replies(card["channel"], card["ts"])
        if buttons(m).get("extend_live_app")
    ]
    notice = notices[-1]  # ours (the worker may have sent its own already: a short TTL)
    extend = buttons(notice)[ActionId.EXTEND_APP.value]
    assert extend["value"] == job.id and job.short_id in notice["text"]

    answer = bot.sender.interaction(
        block_action(ActionId.EXTEND_APP.value, extend["value"], message_ts=notice["ts"])
    )
    assert answer.status_code == 200
    replies = bot.slack.wait_for(
        lambda: [
            m["text"]
            for m in bot.slack.replies(card["channel"], card["ts"])
            if "extended the app" in m["text"]
        ],
        timeout=20,  # through the notifier's paced lane, on a busy CI machine
    )
    assert "<@U1>" in replies[0]
    with session_scope(bot.engine) as session:
        extended = queries.get_job(session, job_id=job.id)
    assert extended is not None and extended.expires_at is not None
    assert extended.expires_at > job.expires_at

    # A click once the app is gone is refused, to the clicker alone, without a trace.
    bot.sender.command(f"cancel {job.short_id}", channel="C1", user="U1")
    wait_job(bot, {JobStatus.CANCELLED})
    bot.sender.interaction(block_action(ActionId.EXTEND_APP.value, job.id, message_ts=notice["ts"]))
    said = bot.slack.wait_for(
        lambda: [e for e in bot.slack.ephemeral if "only a live app" in str(e)], timeout=20
    )
    assert "Traceback" not in str(said)
    bot.wait_idle()
    assert bot.slack.rejections == []
