"""The notifier's mirror of Slack's per-method tiers: a slot is taken before a call and frees a
window after its answer; `keep` holds slots back; several methods are taken all or none."""

from __future__ import annotations

from bot.slack_budget import MARGIN_SECONDS, MethodBudget
from tests.support.clock import HandClock


def test_a_full_window_says_how_long_until_its_oldest_call_leaves() -> None:
    clock = HandClock()
    budget = MethodBudget({"chat.update": 2}, window=60, clock=clock)
    for _ in range(2):
        assert budget.take("T1", ["chat.update"]) == 0
        budget.stamp("T1", "chat.update")
        clock.now += 10
    wait = budget.take("T1", ["chat.update"])
    assert wait == 60 + MARGIN_SECONDS - 20  # the first call, stamped at 100, leaves at 160.5
    assert budget.take("T2", ["chat.update"]) == 0  # another workspace has its own window
    clock.now += wait
    assert budget.take("T1", ["chat.update"]) == 0


def test_calls_in_flight_count_until_answered() -> None:
    budget = MethodBudget({"chat.update": 1}, clock=HandClock())
    assert budget.take("T1", ["chat.update"]) == 0
    assert budget.take("T1", ["chat.update"]) > 0  # not stamped yet, still holds its slot


def test_keep_leaves_slots_for_what_matters_more() -> None:
    budget = MethodBudget({"chat.update": 5}, clock=HandClock())
    progress = 0
    while budget.take("T1", ["chat.update"], keep=2) == 0:
        budget.stamp("T1", "chat.update")
        progress += 1
    assert progress == 3
    assert budget.available("T1", "chat.update") == 2
    assert budget.take("T1", ["chat.update"]) == 0  # a final edit still gets one


def test_several_methods_are_taken_all_or_none_and_untiered_ones_are_free() -> None:
    budget = MethodBudget({"files.a": 1, "files.b": 2}, clock=HandClock())
    assert budget.take("T1", ["files.a", "files.b"]) == 0
    budget.stamp("T1", "files.a")
    budget.stamp("T1", "files.b")
    assert budget.take("T1", ["files.a", "files.b"]) > 0
    assert budget.available("T1", "files.b") == 1  # nothing taken by the refused call
    assert budget.take("T1", ["chat.postMessage"]) == 0
    assert budget.available("T1", "chat.postMessage") > 1000
