"""The expiry notice and its Extend button, and the answer to a click."""

from __future__ import annotations

from datetime import UTC, datetime

from bot import blocks
from bot.ids import ActionId, BlockId
from bot.service import extend_hours
from tests.unit.test_blocks import assert_valid_message

JOB = "0123456789abcdef0123456789abcdef"
ENDS = datetime(2025, 1, 2, 15, 30, tzinfo=UTC)


def test_the_notice_says_when_and_carries_the_job_in_its_extend_button() -> None:
    notice = blocks.expiry_notice(JOB, ENDS, 1.0)
    assert_valid_message(notice)
    assert "01234567" in notice.text and "2025-01-02 15:30 UTC" in notice.text
    [actions] = [b for b in notice.blocks if b["type"] == "actions"]
    assert actions["block_id"] == BlockId.EXPIRY_ACTIONS
    [extend] = actions["elements"]
    assert (extend["action_id"], extend["value"]) == (ActionId.EXTEND_APP.value, JOB)
    assert extend["text"]["text"] == "Extend by 1 hour"
    assert blocks.expiry_notice(JOB, ENDS, 0.25).blocks[1]["elements"][0]["text"]["text"] == (
        "Extend by 15 minutes"
    )


def test_the_button_adds_an_hour_or_the_providers_whole_cap_if_less() -> None:
    assert extend_hours(None) == 1.0
    assert extend_hours(86400) == 1.0
    assert extend_hours(1800) == 0.5


def test_the_extended_reply_names_who_and_until_when() -> None:
    reply = blocks.extended_reply("U1", JOB, ENDS, cut_short="e2b")
    assert_valid_message(reply)
    assert "<@U1>" in reply.text and "15:30 UTC" in reply.text and "e2b" in reply.text
    assert blocks.cancelled_reply("").text == "🚫 Cancelled."
    assert blocks.cancelled_reply("U2").text == "🚫 Cancelled by <@U2>."
