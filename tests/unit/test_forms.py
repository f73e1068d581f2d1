"""The `/train` form's state parsed against the limits the bot and the sandbox provider set."""

from __future__ import annotations

from typing import Any

import pytest

from bot import blocks
from bot.forms import FormErrors, TrainRequest, parse_train_submission
from bot.ids import BlockId
from bot.limits import TASK_CHOICES
from pipeline.budget import BudgetRange
from pipeline.limits import MAX_RESOURCES
from pipeline.netguard import UrlGuard
from tests.support.slack_payloads import train_form, view_submission

MB = 1024 * 1024
BUDGETS = BudgetRange(default=60, most=600)  # what the default settings allow


def parse(
    *,
    default_lifetime: int = 3600,
    max_lifetime: int | None = None,
    budgets: BudgetRange = BUDGETS,
    **fields: Any,
) -> TrainRequest:
    fields.setdefault("name", "iris model")
    fields.setdefault("dataset", "iris")
    view = blocks.train_modal(
        channel_id="C1",
        builtins=[("iris", "iris")],
        max_upload_mb=10,
        default_lifetime=default_lifetime,
        max_lifetime=max_lifetime,
        budgets=budgets,
    )
    submitted = view_submission(view, train_form(**fields))["view"]
    return parse_train_submission(
        submitted,
        user_id="U1",
        guard=UrlGuard(),
        max_upload_bytes=10 * MB,
        default_lifetime=default_lifetime,
        max_lifetime=max_lifetime,
        budgets=budgets,
    )


def errors(**kwargs: Any) -> dict[str, str]:
    with pytest.raises(FormErrors) as raised:
        parse(**kwargs)
    return raised.value.errors


def test_a_lifetime_within_the_cap_is_kept() -> None:
    assert parse(ttl="900", max_lifetime=3600).ttl_seconds == 900
    assert parse(ttl="86400").ttl_seconds == 86400


def test_a_lifetime_above_the_cap_is_a_field_error_not_a_silent_change() -> None:
    # e.g. a form opened before the service moved to E2B's 1-hour plan
    found = errors(ttl="86400", max_lifetime=3600)
    assert set(found) == {BlockId.TTL}
    assert "at most 1 h" in found[BlockId.TTL]


@pytest.mark.parametrize("value", ["forever", "-5", "0", "10"])
def test_a_lifetime_that_is_no_choice_is_a_field_error(value: str) -> None:
    assert set(errors(ttl=value)) == {BlockId.TTL}


def test_no_lifetime_chosen_is_the_default_capped_to_the_provider() -> None:
    assert parse(default_lifetime=300).ttl_seconds == 300
    assert parse(default_lifetime=86400, max_lifetime=3600).ttl_seconds == 3600


def test_task_choices() -> None:
    assert parse(task="auto").task is None
    assert parse().task is None
    assert parse(task="regression").task == "regression"
    assert [value for value, _ in TASK_CHOICES] == ["auto", "classification", "regression"]
    assert set(errors(task="clustering")) == {BlockId.TASK}


def test_the_form_takes_as_many_links_as_the_stage_reads() -> None:
    links = [f"https://example.com/{i}" for i in range(MAX_RESOURCES + 1)]
    assert parse(resources="\n".join(links[:MAX_RESOURCES])).resources == links[:MAX_RESOURCES]
    found = errors(resources="\n".join(links))
    assert f"at most {MAX_RESOURCES} links" in found[BlockId.RESOURCES]


@pytest.mark.parametrize("size", ["big", [1], {"kb": 1}, -5])
def test_an_upload_whose_size_is_not_a_number_is_a_field_error(size: Any) -> None:
    upload = {"id": "F1", "name": "data.csv", "filetype": "csv", "size": size}
    found = errors(dataset=None, dataset_file=[upload], target="y")
    assert "could not be read" in found[BlockId.DATASET_FILE], found
