"""The `/train` form's training time through the real Bolt app and a fake Slack: offered as the
settings allow, recorded on the job, passed to the script, and said on the card."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from bot.ids import BlockId
from bot.manifest import BOT_SCOPES
from pipeline.events import EventKind
from tests.fakes.slack_api import FakeSlack
from tests.integration.test_budget_jobs import PRINT_BUDGET
from tests.integration.test_slack_bot import open_modal, submit
from tests.support.pipeline import ScriptedGenerator, event_messages
from tests.support.slack_bot import BotHarness, card_of, jobs, running_bot, wait_job


@pytest.fixture
def bot(sqlite_engine: Engine, tmp_path: Path) -> Iterator[BotHarness]:
    with FakeSlack(scopes=BOT_SCOPES) as fake:
        settings = {
            "TRAINBOT_TRAIN_TIMEOUT": 300,  # room for at most 200 s of search
            "TRAINBOT_TRAIN_BUDGET_SECONDS": 30,
            # Scripted code is not the template's: without bubblewrap it runs only when allowed.
            "TRAINBOT_ALLOW_UNISOLATED_CODE": True,
        }
        with running_bot(
            sqlite_engine,
            tmp_path,
            fake,
            settings_overrides=settings,
            codegen=ScriptedGenerator(train_py=PRINT_BUDGET),
        ) as harness:
            yield harness


def _offered(view: dict[str, Any]) -> list[str]:
    block = next(b for b in view["blocks"] if b.get("block_id") == BlockId.BUDGET)
    return [o["value"] for o in block["element"]["options"]]


def test_the_chosen_training_time_is_the_jobs_budget_and_on_its_card(bot: BotHarness) -> None:
    view = open_modal(bot)
    assert _offered(view) == ["30", "60", "120"]  # 5 and 10 min do not fit 300 s
    answer = submit(bot, view, name="Quick", dataset="iris", budget="60")
    assert answer.status_code == 200 and answer.text == ""
    job = wait_job(bot)
    assert job.time_budget_seconds == 60
    logs = event_messages(bot.runtime.ctx.services, job.id, EventKind.LOG.value)
    assert "budget from task.json: 60.0" in logs
    bot.wait_idle()
    card = json.dumps(card_of(bot, job)["blocks"])
    assert "Training budget: 1 min" in card


def test_a_training_time_the_settings_do_not_allow_is_a_field_error(bot: BotHarness) -> None:
    view = open_modal(bot)
    answer = submit(bot, view, name="Slow", dataset="iris", budget="600")
    body = answer.json()
    assert body["response_action"] == "errors"
    assert body["errors"] == {
        BlockId.BUDGET: "Training may take at most 3 min 20 s here; pick a shorter time."
    }
    assert jobs(bot) == []
