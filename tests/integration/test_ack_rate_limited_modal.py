"""A rate-limited views.open holds neither the ack of the next request nor the person who
typed `/train`: the bot does not wait out a 429 for a trigger that expires in 3 s, and says
when to try again (bot/listeners/commands.py, bot/slack_client.py `without_waits`)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from bot.manifest import BOT_SCOPES
from tests.fakes.slack_api import FakeSlack
from tests.support.clock import HandClock
from tests.support.slack_bot import BotHarness, running_bot
from tests.support.slack_payloads import SlackSender

WINDOW = 60.0  # the fake's tier window: Slack's per-minute tiers (tests/fakes/slack_tiers.py)


@pytest.fixture
def clock() -> HandClock:
    return HandClock()


@pytest.fixture
def bot(sqlite_engine: Engine, tmp_path: Path, clock: HandClock) -> Iterator[BotHarness]:
    # One views.open a minute, so the second /train's form is refused with a 429.
    fake = FakeSlack(scopes=BOT_SCOPES, tier_limits={"views.open": 1}, tier_clock=clock)
    with fake, running_bot(sqlite_engine, tmp_path, fake) as harness:
        yield harness


def use_up_views_open(bot: BotHarness) -> None:
    assert bot.sender.command("", channel="C0FIRST", user="U0FIRST").status_code == 200
    bot.slack.wait_for(lambda: [v for v in bot.slack.views if v["method"] == "views.open"])


def ephemerals_to(bot: BotHarness, user: str) -> list[dict[str, Any]]:
    return [e for e in bot.slack.ephemeral if e["user"] == user]


def test_a_refused_form_is_not_retried_and_the_person_is_told_when_to_try_again(
    bot: BotHarness, clock: HandClock
) -> None:
    use_up_views_open(bot)
    clock.now += 17  # the window's one slot frees at 1000 + 60: Retry-After 43

    started = time.monotonic()
    response = bot.sender.command("", channel="C1", user="U1")
    assert response.status_code == 200 and response.text == ""
    # Told within seconds, not after sleeping out 43 s (slack_sdk's RateLimitErrorRetryHandler
    # would sleep Retry-After before each of its retries).
    [told] = bot.slack.wait_for(lambda: ephemerals_to(bot, "U1"), timeout=5)
    assert time.monotonic() - started < 5
    assert told["channel"] == "C1"
    assert "Slack is busy" in told["text"], told
    assert re.search(r"/train` again in 43 seconds", told["text"]), told["text"]
    # The notice comes after the bot gave up on the form: one try, not retried.
    assert [call.status for call in bot.slack.calls_to("views.open")] == [200, 429]


def test_refused_forms_do_not_hold_the_acks_of_other_requests(bot: BotHarness) -> None:
    """More refused forms at once than Bolt has listener threads: each /train is still acked
    at once, then `/train help`, and everyone hears why their form did not open."""
    use_up_views_open(bot)
    people = [f"U0P{n:02d}" for n in range(40)]
    answers: dict[str, tuple[int, float]] = {}
    lock = threading.Lock()

    def train(user: str) -> None:
        sender = SlackSender(bot.base_url)  # its own trigger ids and connection
        try:
            response = sender.command("", channel=f"C0{user}", user=user)
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        with lock:
            answers[user] = (status, sender.ack_seconds[-1] if sender.ack_seconds else 99.0)

    threads = [threading.Thread(target=train, args=(user,)) for user in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert {user: status for user, (status, _) in answers.items()} == dict.fromkeys(people, 200)
    assert max(seconds for _, seconds in answers.values()) < 2.5, answers

    help_answer = bot.sender.command("help", channel="C1", user="U1")
    assert help_answer.status_code == 200 and "/train" in help_answer.text
    assert bot.sender.ack_seconds[-1] < 1.0

    told = bot.slack.wait_for(
        lambda: len({e["user"] for e in bot.slack.ephemeral} & set(people)) == len(people),
        timeout=20,
    )
    assert told
    refused = [call for call in bot.slack.calls_to("views.open") if call.status == 429]
    assert len(refused) == len(people)  # one try each, none retried
