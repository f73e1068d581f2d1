"""The `/train` modal's state becomes one typed request here, or field errors by block id."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from typing import Any

from bot.ids import ActionId, BlockId
from bot.limits import AUTO_TASK, MAX_NAME, TASK_CHOICES
from bot.text import format_lifetime
from pipeline.budget import BudgetRange, format_budget
from pipeline.builtin_datasets import BUILTIN_DATASETS
from pipeline.errors import FetchError, UnsafeURLError
from pipeline.limits import MAX_RESOURCES, MIN_APP_LIFETIME, capped_lifetime
from pipeline.netguard import UrlGuard, link_problem

SLACK_FILE_PREFIX = "slack-file"
TASKS = {value for value, _ in TASK_CHOICES}
# Resolving a user's host name must not eat the 3 s Slack gives us to answer; past this the
# pipeline's own guard checks the address again before fetching anything.
DNS_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class TrainRequest:
    name: str
    goal: str
    dataset_source: str  # a built-in name, an http(s) URL, or "slack-file:<id>/<name>"
    target: str | None
    ttl_seconds: int
    time_budget_seconds: int  # seconds of training search
    resources: list[str] = field(default_factory=list)
    task: str | None = None
    channel_id: str = ""
    user_id: str = ""
    request_key: str = ""


class FormErrors(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


def parse_private_metadata(view: dict[str, Any]) -> dict[str, Any]:
    try:
        data = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def request_key(view: dict[str, Any]) -> str:
    """Same view and same answers, same key: a redelivered submission is recognised."""
    state = json.dumps(view.get("state", {}).get("values", {}), sort_keys=True)
    return hashlib.sha256(f"{view.get('id', '')}\n{state}".encode()).hexdigest()


def parse_train_submission(
    view: dict[str, Any],
    *,
    user_id: str,
    guard: UrlGuard,
    max_upload_bytes: int,
    default_lifetime: int,
    max_lifetime: int | None,
    budgets: BudgetRange,
) -> TrainRequest:
    """Raises FormErrors keyed by block id; each message says what to change.

    `max_lifetime` is the sandbox provider's cap (None: no cap); no lifetime chosen means
    `default_lifetime`, capped to it. `budgets` are the training times the settings allow;
    none chosen means their default.
    """
    values = view.get("state", {}).get("values", {})
    errors: dict[str, str] = {}

    name = _text(values, BlockId.NAME, ActionId.NAME)
    if not name:
        errors[BlockId.NAME] = "Give the model a name."
    elif len(name) > MAX_NAME:
        errors[BlockId.NAME] = f"Keep the name under {MAX_NAME} characters."

    builtin = _selected(values, BlockId.DATASET, ActionId.DATASET)
    url = _text(values, BlockId.DATASET_URL, ActionId.DATASET_URL)
    files = _files(values)
    chosen = [
        b
        for b, given in (
            (BlockId.DATASET, builtin),
            (BlockId.DATASET_URL, url),
            (BlockId.DATASET_FILE, files),
        )
        if given
    ]
    source = ""
    if not chosen:
        errors[BlockId.DATASET] = "Pick a built-in data set, give a CSV link, or upload a CSV."
    elif len(chosen) > 1:
        for block in chosen:
            errors[block] = "Use only one data source: clear the others."
    elif builtin:
        if builtin not in BUILTIN_DATASETS:
            errors[BlockId.DATASET] = "Pick one of the listed data sets."
        source = builtin
    elif url:
        problem = check_url(url, guard)
        if problem:
            errors[BlockId.DATASET_URL] = problem
        source = url
    else:
        problem, source = _check_upload(files, max_upload_bytes)
        if problem:
            errors[BlockId.DATASET_FILE] = problem

    target = _text(values, BlockId.TARGET, ActionId.TARGET) or None
    if (url or files) and not target and len(chosen) == 1:
        errors[BlockId.TARGET] = "Name the column to predict (a header of your CSV)."

    resources = [
        line.strip()
        for line in _text(values, BlockId.RESOURCES, ActionId.RESOURCES).splitlines()
        if line.strip()
    ]
    resource_problem = _check_resources(resources)
    if resource_problem:
        errors[BlockId.RESOURCES] = resource_problem

    task = _selected(values, BlockId.TASK, ActionId.TASK) or AUTO_TASK
    if task not in TASKS:
        errors[BlockId.TASK] = "Pick one of the listed tasks."
    ttl_seconds, ttl_problem = _lifetime(values, default_lifetime, max_lifetime)
    if ttl_problem:
        errors[BlockId.TTL] = ttl_problem
    budget, budget_problem = _budget(values, budgets)
    if budget_problem:
        errors[BlockId.BUDGET] = budget_problem

    if errors:
        raise FormErrors(errors)
    return TrainRequest(
        name=name,
        goal=_text(values, BlockId.GOAL, ActionId.GOAL),
        dataset_source=source,
        target=target,
        resources=resources,
        task=None if task == AUTO_TASK else task,
        ttl_seconds=ttl_seconds,
        time_budget_seconds=budget,
        channel_id=str(parse_private_metadata(view).get("channel_id", "")),
        user_id=user_id,
        request_key=request_key(view),
    )


def check_url(url: str, guard: UrlGuard) -> str | None:
    """A field error for a URL the pipeline would refuse, or None."""
    problem = link_problem(url)  # the guard's own reading of the link, never a second parser
    if problem:
        return problem
    outcome: list[str | None] = []

    def resolve() -> None:
        try:
            guard.check(url)
            outcome.append(None)
        except UnsafeURLError as error:
            outcome.append(error.message)
        except FetchError as error:
            outcome.append(error.message)

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(DNS_CHECK_SECONDS)
    return outcome[0] if outcome else None


def _check_upload(files: list[dict[str, Any]], max_bytes: int) -> tuple[str | None, str]:
    if len(files) > 1:
        return "Upload one CSV file.", ""
    file = files[0]
    name = str(file.get("name") or file.get("title") or "upload.csv")
    is_csv = name.lower().endswith(".csv") or file.get("filetype") == "csv"
    if not is_csv:
        return f"{name} is not a CSV file; export the data as .csv and upload that.", ""
    size = file.get("size") or 0
    if not isinstance(size, int) or size < 0:  # Slack sends the byte count as a number
        return f"The upload of {name[:60]} could not be read; attach the file again.", ""
    if size > max_bytes:
        limit = max_bytes // (1024 * 1024)
        return f"{name} is {size / 1024 / 1024:.1f} MB; the limit is {limit} MB.", ""
    file_id = str(file.get("id") or "")
    if not file_id:
        return "The upload did not finish; attach the file again.", ""
    return None, f"{SLACK_FILE_PREFIX}:{file_id}/{name}"


def _lifetime(
    values: dict[str, Any], default: int, max_lifetime: int | None
) -> tuple[int, str | None]:
    """Seconds the app stays up, or a field error. A lifetime past the cap is refused, not
    shortened: the person picks again knowing how long the app will really stay up."""
    chosen = _selected(values, BlockId.TTL, ActionId.TTL)
    if chosen is None:
        return capped_lifetime(default, max_lifetime), None
    try:
        seconds = int(chosen)
    except ValueError:
        seconds = 0
    if seconds < MIN_APP_LIFETIME:
        return 0, "Pick one of the listed lifetimes."
    if max_lifetime is not None and seconds > max_lifetime:
        return 0, (
            f"The sandbox keeps an app up for at most {format_lifetime(max_lifetime)}; "
            "pick a shorter time."
        )
    return seconds, None


def _budget(values: dict[str, Any], budgets: BudgetRange) -> tuple[int, str | None]:
    """Seconds of training search, or a field error. As with lifetimes, one the settings no
    longer allow (a form opened before they changed) is refused, so the person picks again."""
    chosen = _selected(values, BlockId.BUDGET, ActionId.BUDGET)
    if chosen is None:
        return budgets.default, None
    try:
        seconds = int(chosen)
    except ValueError:
        return 0, "Pick one of the listed training times."
    if budgets.problem(seconds) is None:
        return seconds, None
    if budgets.most is not None and seconds > budgets.most:
        most = format_budget(budgets.most)
        return 0, f"Training may take at most {most} here; pick a shorter time."
    return 0, "Pick one of the listed training times."


def _check_resources(resources: list[str]) -> str | None:
    if len(resources) > MAX_RESOURCES:
        return f"Give at most {MAX_RESOURCES} links."
    for line in resources:
        if link_problem(line):
            return f"'{line[:60]}' is not an http(s) link; put one link per line."
    return None


def _action(values: dict[str, Any], block: str, action: str) -> dict[str, Any]:
    found = values.get(block, {}).get(action)
    return found if isinstance(found, dict) else {}


def _text(values: dict[str, Any], block: str, action: str) -> str:
    return str(_action(values, block, action).get("value") or "").strip()


def _selected(values: dict[str, Any], block: str, action: str) -> str | None:
    option = _action(values, block, action).get("selected_option")
    return str(option["value"]) if isinstance(option, dict) and "value" in option else None


def _files(values: dict[str, Any]) -> list[dict[str, Any]]:
    files = _action(values, BlockId.DATASET_FILE, ActionId.DATASET_FILE).get("files")
    return [f for f in files if isinstance(f, dict)] if isinstance(files, list) else []
