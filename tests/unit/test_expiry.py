"""The words for an app that stops before the lifetime its user asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.expiry import duration, early_stop_warning

HOUR = 3600
STARTED = datetime(2026, 3, 2, 13, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (30, "30 seconds"),
        (60, "1 minute"),
        (45 * 60, "45 minutes"),
        (HOUR, "1 hour"),
        (HOUR + 30 * 60 + 10, "1 hour 30 minutes"),
        (23 * HOUR + 20, "23 hours"),
        (24 * HOUR, "24 hours"),
    ],
)
def test_durations_read_as_words(seconds: int, words: str) -> None:
    assert duration(seconds) == words


def warning(real_end: datetime, *, cap: int | None = HOUR, asked: int = 24 * HOUR) -> str | None:
    asked_from = STARTED + timedelta(minutes=1)  # the app went live a minute after the start
    return early_stop_warning(
        provider="e2b",
        max_lifetime=cap,
        started=STARTED,
        asked=asked,
        asked_end=asked_from + timedelta(seconds=asked),
        real_end=real_end,
    )


def test_a_cap_that_cut_the_lifetime_is_named_with_its_setting() -> None:
    assert warning(STARTED + timedelta(hours=1)) == (
        "E2B stops this sandbox at 14:05 UTC, 23 hours 1 minute before the 24 hours asked: "
        "the plan caps a sandbox at 1 hour (TRAINBOT_E2B_MAX_LIFETIME)"
    )


def test_an_end_as_asked_says_nothing() -> None:
    asked_end = STARTED + timedelta(minutes=1, seconds=1800)
    assert warning(asked_end, asked=1800) is None
    assert warning(asked_end - timedelta(seconds=30), asked=1800) is None  # clocks, round trips


def test_a_plan_smaller_than_configured_says_to_fix_the_setting() -> None:
    message = warning(STARTED + timedelta(hours=1), cap=24 * HOUR)
    assert message is not None
    assert message.endswith(
        "the plan allows less than the 24 hours configured (TRAINBOT_E2B_MAX_LIFETIME); "
        "set that to the plan's cap"
    )


def test_an_end_on_another_day_carries_its_date() -> None:
    message = warning(STARTED + timedelta(hours=12), cap=12 * HOUR)
    assert message is not None
    assert message.startswith("E2B stops this sandbox at 2026-03-03 01:05 UTC, 12 hours 1 minute")
