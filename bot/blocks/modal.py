"""The `/train` form."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.blocks.base import MAX_OPTIONS, context, option, plain
from bot.ids import ActionId, BlockId, CallbackId
from bot.limits import AUTO_TASK, MAX_NAME, TASK_CHOICES, budget_choices, lifetime_choices
from bot.text import format_lifetime, safe_url
from pipeline.budget import BudgetRange, format_budget
from pipeline.limits import capped_lifetime


@dataclass(frozen=True)
class TrainFormValues:
    """Initial values for the `/train` modal, e.g. when opening it again for a retry."""

    name: str = ""
    goal: str = ""
    dataset: str = ""
    dataset_url: str = ""
    target: str = ""
    resources: str = ""
    task: str = AUTO_TASK
    ttl: int | None = None  # seconds; None (or one the provider cannot serve): the default
    budget: int | None = None  # training seconds; None (or one not offered): the default


def _input(
    block_id: BlockId,
    label: str,
    element: dict[str, Any],
    *,
    optional: bool = True,
    hint: str | None = None,
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "input",
        "block_id": block_id,
        "label": plain(label, 2000),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = plain(hint, 2000)
    return block


def _text_input(
    action_id: ActionId,
    initial: str,
    *,
    multiline: bool = False,
    placeholder: str | None = None,
    max_length: int | None = None,
) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": action_id}
    if multiline:
        element["multiline"] = True
    if placeholder:
        element["placeholder"] = plain(placeholder, 150)
    if max_length:
        element["max_length"] = max_length
    if initial:
        element["initial_value"] = initial[:max_length] if max_length else initial
    return element


def _select(
    action_id: ActionId, choices: Sequence[tuple[str, str]], initial: str, placeholder: str
) -> dict[str, Any]:
    options = [option(value, label) for value, label in choices[:MAX_OPTIONS]]
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": action_id,
        "placeholder": plain(placeholder, 150),
        "options": options,
    }
    chosen = next((o for o in options if o["value"] == initial), None)
    if chosen is not None:
        element["initial_option"] = chosen
    return element


def _url_input(initial: str) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "url_text_input",
        "action_id": ActionId.DATASET_URL,
        "placeholder": plain("https://example.com/data.csv", 150),
    }
    if safe_url(initial):
        element["initial_value"] = initial
    return element


def _lifetime_input(chosen: int | None, default: int, max_lifetime: int | None) -> dict[str, Any]:
    default = capped_lifetime(default, max_lifetime)
    seconds = lifetime_choices(default=default, max_lifetime=max_lifetime)
    initial = chosen if chosen in seconds else default
    choices = [(str(s), format_lifetime(s)) for s in seconds]
    return _input(
        BlockId.TTL,
        "Keep the live app up for",
        _select(ActionId.TTL, choices, str(initial), "Choose a lifetime"),
    )


def _budget_input(chosen: int | None, budgets: BudgetRange) -> dict[str, Any]:
    seconds = budget_choices(default=budgets.default, most=budgets.most)
    initial = chosen if chosen in seconds else budgets.default
    choices = [
        (str(s), format_budget(s) + (" (default)" if s == budgets.default else "")) for s in seconds
    ]
    return _input(
        BlockId.BUDGET,
        "Training time",
        _select(ActionId.BUDGET, choices, str(initial), "Choose a training time"),
        hint="how long the search for the best model may take; more time tries more models",
    )


def train_modal(
    *,
    channel_id: str,
    builtins: Sequence[tuple[str, str]],
    max_upload_mb: int,
    default_lifetime: int,
    max_lifetime: int | None,
    budgets: BudgetRange,
    values: TrainFormValues | None = None,
) -> dict[str, Any]:
    """The `/train` form. Without built-in data sets the `dataset` block is left out.

    Lifetimes are offered up to `max_lifetime`, the sandbox provider's cap (None: no cap);
    a `default_lifetime` beyond it is shown as the cap. Training times are offered up to
    what the training timeout leaves room for (`budgets`, from the settings).
    """
    v = values or TrainFormValues()
    blocks: list[dict[str, Any]] = [
        context(
            "Pick *exactly one* data source: a built-in set, a link to a CSV, or an uploaded CSV."
        ),
        _input(
            BlockId.NAME,
            "Model name",
            _text_input(
                ActionId.NAME, v.name, max_length=MAX_NAME, placeholder="e.g. churn-predictor"
            ),
            optional=False,
        ),
        _input(
            BlockId.GOAL,
            "Goal",
            _text_input(
                ActionId.GOAL,
                v.goal,
                multiline=True,
                placeholder="e.g. predict which customers will churn",
            ),
        ),
    ]
    if builtins:
        blocks.append(
            _input(
                BlockId.DATASET,
                "Built-in data set",
                _select(ActionId.DATASET, builtins, v.dataset, "Choose a data set"),
            )
        )
    blocks += [
        _input(
            BlockId.DATASET_URL,
            "…or a link to a CSV",
            _url_input(v.dataset_url),
            hint="a public http(s) link to a CSV",
        ),
        _input(
            BlockId.DATASET_FILE,
            f"…or upload a CSV (up to {max_upload_mb} MB)",
            {
                "type": "file_input",
                "action_id": ActionId.DATASET_FILE,
                "filetypes": ["csv"],
                "max_files": 1,
            },
        ),
        _input(
            BlockId.TARGET,
            "Target column",
            _text_input(ActionId.TARGET, v.target, max_length=200, placeholder="e.g. churned"),
            hint="required for CSV data; header names match ignoring case",
        ),
        _input(
            BlockId.RESOURCES,
            "Reference resources",
            _text_input(
                ActionId.RESOURCES,
                v.resources,
                multiline=True,
                placeholder="https://example.com/notes-on-this-data",
            ),
            hint="one URL per line",
        ),
        _input(
            BlockId.TASK,
            "Task",
            _select(ActionId.TASK, TASK_CHOICES, v.task or AUTO_TASK, "Choose a task"),
        ),
        _budget_input(v.budget, budgets),
        _lifetime_input(v.ttl, default_lifetime, max_lifetime),
    ]
    return {
        "type": "modal",
        "callback_id": CallbackId.TRAIN_MODAL,
        "title": plain("Train a model", 24),
        "submit": plain("Train", 24),
        "close": plain("Cancel", 24),
        "private_metadata": json.dumps({"channel_id": channel_id}, separators=(",", ":")),
        "blocks": blocks,
    }
