"""What the Slack side offers and how much it shows, one home for each choice and limit.

Limits the pipeline enforces live in `pipeline.limits`; these are the bot's own.
"""

from __future__ import annotations

from pipeline.codegen.base import TaskType

MAX_NAME = 80  # characters in a model name
LIST_JOBS = 15  # jobs in `/train list`
HOME_JOBS = 20  # jobs in the App Home tab
LOG_LINES_SHOWN = 40  # lines `/train logs` reads (the answer shows as many as fit)

AUTO_TASK = "auto"  # the form's "decide from the data": no task type is forced
TASK_CHOICES: tuple[tuple[str, str], ...] = (
    (AUTO_TASK, "Decide from the data"),
    (TaskType.CLASSIFICATION.value, "Classification"),
    (TaskType.REGRESSION.value, "Regression"),
)
# Seconds the live app may stay up; the form offers those the sandbox provider can serve.
LIFETIMES: tuple[int, ...] = (900, 3600, 14400, 86400)
# Seconds of training search the form offers (those the training timeout leaves room for).
BUDGETS: tuple[int, ...] = (30, 60, 120, 300, 600)


def lifetime_choices(*, default: int, max_lifetime: int | None) -> list[int]:
    """The lifetimes the form offers: the usual ones within the provider's cap, and the default.

    `default` is already capped (see `pipeline.limits.capped_lifetime`), so a cap that is not
    one of the usual lifetimes is still offered when it is the default.
    """
    usual = {s for s in LIFETIMES if max_lifetime is None or s <= max_lifetime}
    return sorted(usual | {default})


def budget_choices(*, default: int, most: int | None) -> list[int]:
    """The training budgets the form offers: the usual ones up to `most` (what the training
    timeout leaves room for), and the default, which the settings keep within it."""
    usual = {s for s in BUDGETS if most is not None and s <= most}
    return sorted(usual | {default})
