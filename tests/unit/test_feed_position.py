"""The follower's position in job_events: strictly in id order, never past an id that may
still commit, and a cursor that only covers what is done."""

from __future__ import annotations

from bot.feed_position import FeedPosition


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_ids_are_handed_out_in_order_and_saved_only_once_done() -> None:
    position = FeedPosition(10, grace=5.0, clock=FakeClock())
    assert position.accept([11, 12, 13]) == [11, 12, 13]
    assert position.saved_upto == 10
    position.done(12)  # another lane finished first
    assert position.saved_upto == 10
    position.done(11)
    assert position.saved_upto == 12
    position.done(13)
    assert position.saved_upto == 13 and position.in_flight == 0
    assert position.accept([12, 13]) == []  # read again: nothing handed out twice


def test_a_missing_id_that_commits_late_is_waited_for_and_kept_in_order() -> None:
    clock = FakeClock()
    position = FeedPosition(0, grace=5.0, clock=clock)
    # Id 2 is taken by a transaction that has not committed; 3 has.
    assert position.accept([1, 3]) == [1]
    assert position.gap_wait() == 5.0
    clock.now += 4.0
    assert position.accept([3]) == []
    position.done(1)
    assert position.saved_upto == 1  # never past the missing id
    assert position.accept([2, 3]) == [2, 3]
    assert position.gap_wait() is None and position.watched() == []


def test_an_id_missing_past_the_grace_is_stepped_over_and_still_taken_if_it_comes() -> None:
    clock = FakeClock()
    position = FeedPosition(0, grace=5.0, late_window=60.0, clock=clock)
    assert position.accept([1, 4]) == [1]
    clock.now += 5.0
    assert position.accept([4]) == [4]  # 2 and 3 rolled back, or are very late
    position.done(1)
    position.done(4)
    assert position.saved_upto == 4
    assert position.watched() == [2, 3]
    assert position.accept_late([3]) == [3]
    assert position.accept_late([3]) == []  # once
    assert position.watched() == [2]
    clock.now += 61.0
    assert position.watched() == []
