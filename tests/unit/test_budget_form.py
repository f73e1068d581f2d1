"""The `/train` form's "Training time": what it offers within the settings, and how a chosen
(or tampered) value is read."""

from __future__ import annotations

from typing import Any

import pytest

from bot import blocks
from bot.forms import FormErrors, parse_train_submission
from bot.ids import ActionId, BlockId
from pipeline.budget import BudgetRange
from pipeline.netguard import UrlGuard
from tests.support.slack_payloads import train_form, view_submission
from tests.unit.test_blocks import assert_valid_view

DEFAULTS = BudgetRange(default=60, most=600)  # TRAINBOT_TRAIN_TIMEOUT 900, budget unset


def modal(budgets: BudgetRange = DEFAULTS) -> dict[str, Any]:
    return blocks.train_modal(
        channel_id="C1",
        builtins=[("iris", "iris")],
        max_upload_mb=10,
        default_lifetime=3600,
        max_lifetime=None,
        budgets=budgets,
    )


def budget_select(view: dict[str, Any]) -> dict[str, Any]:
    block = next(b for b in view["blocks"] if b.get("block_id") == BlockId.BUDGET)
    assert block["type"] == "input" and block["optional"] is True
    assert block["label"]["text"] == "Training time"
    element: dict[str, Any] = block["element"]
    return element


def offered(view: dict[str, Any]) -> list[tuple[int, str]]:
    return [(int(o["value"]), o["text"]["text"]) for o in budget_select(view)["options"]]


def submit(budget: str | None, budgets: BudgetRange = DEFAULTS) -> int:
    view = view_submission(modal(budgets), train_form(name="m", dataset="iris", budget=budget))
    request = parse_train_submission(
        view["view"],
        user_id="U1",
        guard=UrlGuard(),
        max_upload_bytes=1024 * 1024,
        default_lifetime=3600,
        max_lifetime=None,
        budgets=budgets,
    )
    return request.time_budget_seconds


def test_the_form_offers_training_times_with_a_minute_as_the_default() -> None:
    view = modal()
    assert_valid_view(view)
    select = budget_select(view)
    assert select["type"] == "static_select"
    assert select["action_id"] == ActionId.BUDGET
    assert offered(view) == [
        (30, "30 s"),
        (60, "1 min (default)"),
        (120, "2 min"),
        (300, "5 min"),
        (600, "10 min"),
    ]
    assert select["initial_option"]["value"] == "60"


def test_the_form_offers_only_what_the_training_timeout_leaves_room_for() -> None:
    # TRAINBOT_TRAIN_TIMEOUT=360: at most 240 s of search; a configured default of 90 s.
    view = modal(BudgetRange(default=90, most=240))
    assert offered(view) == [
        (30, "30 s"),
        (60, "1 min"),
        (90, "1 min 30 s (default)"),
        (120, "2 min"),
    ]
    assert budget_select(view)["initial_option"]["value"] == "90"


def test_a_prefilled_budget_the_form_offers_is_the_initial_choice() -> None:
    values = blocks.TrainFormValues(budget=300)
    view = blocks.train_modal(
        channel_id="C1",
        builtins=[],
        max_upload_mb=10,
        default_lifetime=3600,
        max_lifetime=None,
        budgets=DEFAULTS,
        values=values,
    )
    assert budget_select(view)["initial_option"]["value"] == "300"


def test_the_chosen_training_time_is_the_request_budget() -> None:
    assert submit("300") == 300
    assert submit("30") == 30


def test_no_training_time_chosen_is_the_default() -> None:
    assert submit(None) == 60
    assert submit(None, BudgetRange(default=90, most=240)) == 90


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("1200", "Training may take at most 10 min here; pick a shorter time."),
        ("5", "Pick one of the listed training times."),
        ("soon", "Pick one of the listed training times."),
        ("-60", "Pick one of the listed training times."),
    ],
)
def test_an_invalid_training_time_is_a_field_error(value: str, error: str) -> None:
    with pytest.raises(FormErrors) as raised:
        submit(value)
    assert raised.value.errors == {BlockId.BUDGET: error}
