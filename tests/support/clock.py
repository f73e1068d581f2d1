"""A clock that only the test moves, for fakes and budgets that take a `clock`."""

from __future__ import annotations


class HandClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
