"""Deploy stage: start the app, wait until it answers, and prove it with a real prediction.

Nobody is told an app is live before it has answered a prediction for rows it never saw.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from pipeline.codegen.base import TaskType
from pipeline.codegen.contract import APP_SCRIPT, MAX_BODY_BYTES, MAX_ROWS
from pipeline.errors import DeployError, JobCancelled
from pipeline.sandbox.base import Sandbox
from pipeline.stages.train import last_error_line

POLL_SECONDS = 0.25
SHOWN_HEADERS = 8  # of the held-out rows' keys, when the app refuses them
PROBE_SECONDS = 5.0  # each bad request must be answered this quickly
SHOWN_ANSWER = 300  # characters of an app's wrong answer quoted back
HTML_TAG = re.compile(r"<[^>]*>")


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
        check_refuses_bad_requests(client, url, holdout[0])
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
                detail=exited.log_tail(),
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
    """The app's own words: the "error" of a contract-shaped answer, else the body's text.

    An HTML error page is quoted without its markup: the words are what helps.
    """
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        error = None
    text = error if isinstance(error, str) else HTML_TAG.sub(" ", response.text)
    return " ".join(text.split())[:SHOWN_ANSWER]


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


@dataclass(frozen=True)
class Probe:
    """One malformed request from the contract's list, and the answer it must get."""

    what: str  # names the request in the error the code author reads
    method: str
    content: bytes
    status: int


def bad_requests(row: dict[str, Any]) -> list[Probe]:
    """One request of each kind the contract says to refuse, cheap enough for every deploy.

    Left out: a body over the size cap and oversized headers (a megabyte through the
    sandbox's proxy, which may refuse it itself) and a stalled body (no client library
    sends one, and it costs the read timeout).
    """
    huge = "9" * 400  # overflows float(); the contract's cap refuses it while parsing
    # One such value is enough: the body is refused while parsing, whatever the row lacks.
    huge_row = "{" + ", ".join(f"{json.dumps(key)}: {huge}" for key in list(row)[:1]) + "}"
    too_many = json.dumps({"rows": [row] * (MAX_ROWS + 1)}).encode()
    # On wide data that many rows are over the body cap too, which then refuses them first.
    too_many_answer = 400 if len(too_many) <= MAX_BODY_BYTES else 413
    return [
        Probe("a body that is not JSON", "POST", b"rows=1", 400),
        Probe('{"rows": "not a list"}', "POST", b'{"rows": "not a list"}', 400),
        Probe(
            "a row with a 400-digit integer",
            "POST",
            f'{{"rows": [{huge_row}]}}'.encode(),
            400,
        ),
        Probe(
            "JSON nested 5,000 levels deep",
            "POST",
            b'{"rows": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            400,
        ),
        Probe(
            f"{MAX_ROWS + 1} rows (over the cap of {MAX_ROWS})",
            "POST",
            too_many,
            too_many_answer,
        ),
        # A standard method /predict does not take: the same "no handler" path in an
        # http.server app as a made-up one, without the risk that a proxy in front of the
        # sandbox (E2B's) refuses an unknown method before the app sees it.
        Probe("the method DELETE, which /predict does not take", "DELETE", b"{}", 405),
    ]


def check_refuses_bad_requests(client: httpx.Client, url: str, row: dict[str, Any]) -> None:
    """Each bad request gets its JSON 4xx quickly, and the app still answers /health after it."""
    for probe in bad_requests(row):
        try:
            response = client.request(
                probe.method,
                f"{url}/predict",
                content=probe.content,
                headers={"Content-Type": "application/json"},
                timeout=PROBE_SECONDS,
            )
        except httpx.TimeoutException:
            raise DeployError(
                f"the app did not answer {probe.what} within {PROBE_SECONDS:.0f} seconds; "
                f"it must answer HTTP {probe.status} at once"
            ) from None
        except httpx.HTTPError as error:
            raise DeployError(
                f"the app did not answer {probe.what} ({type(error).__name__}); "
                f"it must answer HTTP {probe.status} with a JSON error"
            ) from error
        problem = _refusal_problem(response, probe)
        if problem:
            raise DeployError(f"the app answered {probe.what} with {problem}")
        _check_still_healthy(client, url, probe)


def _refusal_problem(response: httpx.Response, probe: Probe) -> str | None:
    """What is wrong with the app's answer to a probe, in words, or None if nothing is."""
    said = _error_text(response)
    if response.status_code != probe.status:
        return (
            f"HTTP {response.status_code} instead of {probe.status} (it said: {said or 'nothing'})"
        )
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if not isinstance(error, str) or not error:
        return (
            f'HTTP {probe.status} but not a JSON {{"error": "..."}} body (it said: '
            f"{said or 'nothing'})"
        )
    if probe.status == 405 and "POST" not in response.headers.get("Allow", ""):
        return "HTTP 405 without an Allow header naming POST"
    return None


def _check_still_healthy(client: httpx.Client, url: str, probe: Probe) -> None:
    try:
        status = client.get(f"{url}/health", timeout=PROBE_SECONDS).status_code
    except httpx.HTTPError as error:
        raise DeployError(
            f"the app stopped answering after {probe.what} ({type(error).__name__})"
        ) from error
    if status != 200:
        raise DeployError(f"after {probe.what}, the app's /health answered HTTP {status}")
