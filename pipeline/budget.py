"""A job's training budget: the wall time its training search may spend (task.json's
`time_budget_seconds`), how people write it, and the room the training timeout keeps above it.

Import-light (the Slack listeners and the CLI parse budgets): the standard library only.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

MIN_BUDGET = 10  # seconds: less than this and no search is worth starting
MAX_BUDGET = 1800  # seconds: past half an hour a chat user has long stopped waiting
DEFAULT_BUDGET = 60  # about a minute: what a person in a chat will wait for a model
# Beyond its search a training script loads the data, refits the chosen model on every
# training row, scores the test split, computes permutation importances, draws the chart
# and saves the model, and a search overruns by up to one candidate's fit. That costs a
# minute on large data whatever the budget, and grows with the search's candidates.
MIN_HEADROOM = 60
HEADROOM_SHARE = 0.5

_UNITS = {
    "": 1,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
}
_BUDGET_TEXT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$")
EXAMPLES = "90, 90s or 2m"


class BudgetError(ValueError):
    """A budget a person wrote that cannot be used; `str(error)` says why and what to write."""


def headroom(budget: float) -> float:
    """Seconds the training timeout must leave beyond a search of `budget` seconds."""
    return max(MIN_HEADROOM, budget * HEADROOM_SHARE)


def timeout_needed(budget: float) -> int:
    """The shortest training timeout a search of `budget` seconds fits in."""
    return math.ceil(budget + headroom(budget))


def largest_budget(train_timeout: float) -> int | None:
    """The longest budget (at most MAX_BUDGET) that fits in `train_timeout`; None when not
    even MIN_BUDGET does."""
    # b + max(MIN_HEADROOM, b * share) <= t, solved for each branch of the max.
    fits = min(train_timeout - MIN_HEADROOM, train_timeout / (1 + HEADROOM_SHARE))
    most = min(MAX_BUDGET, math.floor(fits))
    return most if most >= MIN_BUDGET else None


@dataclass(frozen=True)
class BudgetRange:
    """The budgets a job may ask for where it will run, and what it gets when it asks none."""

    default: int
    most: int | None  # None: the training timeout is too short for any budget to be asked

    def problem(self, seconds: int) -> str | None:
        """Why a job cannot have `seconds` of budget, or None when it can (the default
        always can: it is what the job gets when it asks for none)."""
        if seconds == self.default:
            return None
        if self.most is None:
            return (
                f"no training budget can be chosen: the training timeout leaves no room for "
                f"one (TRAINBOT_TRAIN_TIMEOUT must be at least {timeout_needed(MIN_BUDGET)} s)"
            )
        if MIN_BUDGET <= seconds <= self.most:
            return None
        allowed = f"between {format_budget(MIN_BUDGET)} and {format_budget(self.most)}"
        return f"a training budget of {format_budget(seconds)} is out of range: give one {allowed}"

    def granted(self, asked: int | None) -> tuple[int, str | None]:
        """The budget a job runs with, and a warning when it is not the one it asked for
        (asked where other settings allowed more). None asked: the default."""
        if asked is None or asked == self.default:
            return self.default, None
        if self.most is None:
            return self.default, (
                f"the training budget of {format_budget(asked)} does not fit in this worker's "
                f"training timeout; training gets {format_budget(self.default)}"
            )
        if asked > self.most:
            return self.most, (
                f"the training budget of {format_budget(asked)} does not fit in this worker's "
                f"training timeout (TRAINBOT_TRAIN_TIMEOUT); training gets "
                f"{format_budget(self.most)}"
            )
        return max(asked, MIN_BUDGET), None


def budget_range(*, train_timeout: int, default: int | None) -> BudgetRange:
    """`default` is TRAINBOT_TRAIN_BUDGET_SECONDS (None: unset, so DEFAULT_BUDGET, lowered
    to what fits a short training timeout: half of it when no budget worth asking fits)."""
    most = largest_budget(train_timeout)
    if default is None:
        default = min(DEFAULT_BUDGET, most) if most is not None else max(1, train_timeout // 2)
    return BudgetRange(default=default, most=most)


def parse_budget(text: str) -> int:
    """Seconds from what a person wrote: 90, 90s, 90 sec, 2m, 1.5 min. Raises BudgetError."""
    match = _BUDGET_TEXT.match(text.lower())
    unit = _UNITS.get(match.group(2)) if match else None
    if match is None or unit is None:
        shown = text.strip()[:40]
        raise BudgetError(
            f"'{shown}' is not a training time: give seconds or minutes, such as {EXAMPLES}"
        )
    return round(float(match.group(1)) * unit)


def format_budget(seconds: float) -> str:
    """30 s, 1 min, 1 min 30 s, 10 min: how the form, the card and the CLI say a budget."""
    minutes, secs = divmod(max(0, round(seconds)), 60)
    parts = [f"{minutes} min" if minutes else "", f"{secs} s" if secs else ""]
    return " ".join(p for p in parts if p) or "0 s"
