"""Deploy stage: start the app, wait until it answers, and prove it with a real prediction.

Nobody is told an app is live before it has answered a prediction for rows it never saw.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from pipeline.codegen.base import TaskType
from pipeline.codegen.contract import APP_SCRIPT
from pipeline.errors import DeployError, JobCancelled
from pipeline.sandbox.base import Sandbox
from pipeline.stages.train import last_error_line, log_tail

POLL_SECONDS = 0.25
SHOWN_HEADERS = 8  # of the held-out rows' keys, when the app refuses them


@dataclass(frozen=True)
class Verification:
    rows: int
    correct: int
    predictions: list[Any]


@dataclass(frozen=True)
class Deployment:
    url: str
    verification: Verification


def deploy_app(
    sandbox: Sandbox,
    *,
    task: TaskType,
    classes: list[Any],
    holdout: list[dict[str, Any]],
    holdout_targets: list[Any],
    start_timeout: float,
    should_stop: Callable[[], bool],
) -> Deployment:
    port = sandbox.app_port()
    sandbox.start_server(["python", APP_SCRIPT], port=port, env={"PORT": str(port)})
    url = sandbox.url_for(port).rstrip("/")
    with httpx.Client(timeout=10.0, follow_redirects=False) as client:
        _wait_until_healthy(client, sandbox, url, start_timeout, should_stop)
        verification = verify_predictions(client, url, task, classes, holdout, holdout_targets)
        _check_rejects_bad_input(client, url)
    return Deployment(url=url + "/", verification=verification)


def _wait_until_healthy(
    client: httpx.Client,
    sandbox: Sandbox,
    url: str,
    start_timeout: float,
    should_stop: Callable[[], bool],
) -> None:
    deadline = time.monotonic() + start_timeout
    last_problem = "it never answered"
    while time.monotonic() < deadline:
        if should_stop():
            raise JobCancelled("the job was cancelled while the app was starting")
        exited = sandbox.server_exited()
        if exited is not None:
            raise DeployError(
                f"the app stopped before it answered (exit code {exited.exit_code}): "
                f"{last_error_line(exited)}",
                detail=log_tail(exited),
            )
        try:
            response = client.get(f"{url}/health", timeout=2.0)
            if response.status_code == 200:
                return
            last_problem = f"/health answered {response.status_code}"
        except httpx.HTTPError as error:
            last_problem = f"it did not accept connections ({type(error).__name__})"
        time.sleep(POLL_SECONDS)
    raise DeployError(f"the app did not answer within {start_timeout:.0f} seconds: {last_problem}")


def verify_predictions(
    client: httpx.Client,
    url: str,
    task: TaskType,
    classes: list[Any],
    rows: list[dict[str, Any]],
    targets: list[Any],
) -> Verification:
    """Post the held-out rows as a user would and check the answers.

    `rows` are keyed by the CSV's own headers (untrimmed, original case), as users send
    them, so an app that only knows the trimmed names in schema.json fails here.
    """
    if not rows:
        raise DeployError("there are no held-out rows to verify the app with")
    try:
        response = client.post(f"{url}/predict", json={"rows": rows})
    except httpx.HTTPError as error:
        raise DeployError(f"the app did not answer a prediction request ({error})") from error
    if response.status_code != 200:
        keys = list(rows[0])
        headers = ", ".join(json.dumps(key) for key in keys[:SHOWN_HEADERS])
        headers += ", …" if len(keys) > SHOWN_HEADERS else ""
        raise DeployError(
            f"the app answered a valid prediction request with HTTP {response.status_code}: "
            f"{_error_text(response)} (the rows were keyed by the CSV's own headers: {headers})"
        )
    try:
        predictions = response.json()["predictions"]
    except (ValueError, KeyError, TypeError) as error:
        raise DeployError("the app's /predict answer has no 'predictions' list") from error
    if not isinstance(predictions, list) or len(predictions) != len(rows):
        raise DeployError(f"the app returned {predictions!r} for {len(rows)} rows")
    for value in predictions:
        _check_prediction(value, task, classes)
    correct = sum(_same(p, t, task) for p, t in zip(predictions, targets, strict=False))
    return Verification(rows=len(rows), correct=correct, predictions=predictions)


def _error_text(response: httpx.Response) -> str:
    """The app's own words: the "error" of a contract-shaped answer, else the body's start."""
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = None
    return (error if isinstance(error, str) else response.text)[:300]


def _check_prediction(value: Any, task: TaskType, classes: list[Any]) -> None:
    if task == TaskType.REGRESSION:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise DeployError(f"the app predicted {value!r}, which is not a number")
    elif classes and str(value) not in {str(c) for c in classes}:
        raise DeployError(f"the app predicted {value!r}, which is not one of the classes {classes}")


def _same(prediction: Any, target: Any, task: TaskType) -> bool:
    if task == TaskType.CLASSIFICATION:
        return str(prediction) == str(target)
    scale = max(abs(float(target)), 1.0)
    return abs(float(prediction) - float(target)) <= 0.25 * scale


def _check_rejects_bad_input(client: httpx.Client, url: str) -> None:
    try:
        response = client.post(f"{url}/predict", json={"rows": "not a list"})
    except httpx.HTTPError as error:
        raise DeployError(f"the app stopped answering after a bad request ({error})") from error
    if response.status_code != 400:
        raise DeployError(
            f"the app answered a malformed request with HTTP {response.status_code} instead of 400"
        )
