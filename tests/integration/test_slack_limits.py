"""The Slack side keeps to the provider's lifetime cap and says when it shows only part of a list."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from bot.ids import BlockId
from bot.limits import HOME_JOBS, LIST_JOBS
from storage import queries
from storage.db import session_scope
from storage.states import JobStatus
from tests.fakes.slack_api import FakeSlack
from tests.support.providers import CappedProvider
from tests.support.slack_bot import BotHarness, jobs, running_bot
from tests.support.slack_payloads import train_form, view_submission


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as fake:
        yield fake


def open_modal(bot: BotHarness) -> dict[str, Any]:
    assert bot.sender.command("", channel="C1", user="U1").status_code == 200
    opened = bot.slack.wait_for(lambda: [v for v in bot.slack.views if v["method"] == "views.open"])
    return opened[-1]["view"]


def lifetime_select(view: dict[str, Any]) -> dict[str, Any]:
    block = next(b for b in view["blocks"] if b.get("block_id") == BlockId.TTL)
    return block["element"]


def test_the_form_offers_only_lifetimes_the_provider_can_serve(
    sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    with running_bot(
        sqlite_engine,
        tmp_path,
        fake,
        sandboxes=CappedProvider("e2b", max_lifetime=3600),
        settings_overrides={"TRAINBOT_APP_TTL": 86400},
    ) as bot:
        select = lifetime_select(open_modal(bot))
        assert [o["value"] for o in select["options"]] == ["900", "3600"]
        assert select["initial_option"]["value"] == "3600"  # TRAINBOT_APP_TTL, capped
        # A form opened before the cap applied still offers a day; submitting it is refused.
        view = open_modal(bot)
        answer = bot.sender.interaction(
            view_submission(view, train_form(name="Too long", dataset="iris", ttl="86400"))
        )
        assert answer.status_code == 200
        body = answer.json()
        assert body["response_action"] == "errors"
        assert "at most 1 h" in body["errors"][BlockId.TTL]
        assert jobs(bot) == []
        assert bot.slack.rejections == []


def _old_jobs(engine: Engine, count: int, *, user: str, channel: str) -> None:
    """Jobs that will never run (cancelled while queued), newest last."""
    with session_scope(engine) as session:
        for i in range(count):
            job = queries.create_job(
                session,
                name=f"Old model {i}",
                dataset_source="iris",
                requested_by=user,
                channel_id=channel,
                origin="slack",
            )
            queries.transition(session, job_id=job.id, to=JobStatus.CANCELLED)


def test_list_and_home_count_the_older_jobs_they_leave_out(
    sqlite_engine: Engine, tmp_path: Path, fake: FakeSlack
) -> None:
    count = max(LIST_JOBS, HOME_JOBS) + 3
    _old_jobs(sqlite_engine, count, user="U5", channel="C5")
    with running_bot(sqlite_engine, tmp_path, fake) as bot:
        listed = bot.sender.command("list", channel="C5", user="U5").json()
        assert f"…and {count - LIST_JOBS} older jobs not shown." in json.dumps(
            listed["blocks"], ensure_ascii=False
        )
        assert bot.sender.event({"type": "app_home_opened", "user": "U5", "tab": "home"})
        home = bot.slack.wait_for(lambda: bot.slack.home_views.get("U5"))
        assert f"…and {count - HOME_JOBS} older jobs not shown." in json.dumps(
            home, ensure_ascii=False
        )
        bot.wait_idle()
        assert bot.slack.rejections == []
