"""Training stage: put the code and data in the sandbox, run train.py, collect what it wrote."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.codegen.base import GeneratedCode, TaskSpec
from pipeline.codegen.contract import (
    CHART_FILE,
    DATA_FILE,
    METRICS_FILE,
    MODEL_FILE,
    SCHEMA_FILE,
    SEARCH_MODULE,
    TASK_FILE,
    TRAIN_SCRIPT,
)
from pipeline.errors import JobCancelled, TrainingError
from pipeline.sandbox.base import CommandResult, Sandbox


@dataclass(frozen=True)
class TrainingOutcome:
    metrics: dict[str, Any]
    schema: dict[str, Any]
    artifacts: dict[str, str]  # name -> path on the service's disk


def upload_job_files(
    sandbox: Sandbox, code: GeneratedCode, spec: TaskSpec, data_path: Path
) -> None:
    for name, source in code.files.items():
        sandbox.write_file(name, source)
    sandbox.write_file(TASK_FILE, json.dumps(spec.to_json_dict(), default=str, indent=2))
    # Streamed from disk: a data set of many MB would outlast an in-memory request's deadline.
    sandbox.write_file_from(DATA_FILE, data_path)


def install_requirements(sandbox: Sandbox, requirements: list[str], *, timeout: float) -> None:
    """Extra packages the code asked for (already checked against the allow-list).

    Sandboxes that can install (E2B) do; the local sandbox already has every allowed one.
    """
    install = getattr(sandbox, "install", None)
    if requirements and install is not None:
        install(requirements, timeout=timeout)


def run_training(
    sandbox: Sandbox,
    *,
    timeout: float,
    artifacts_dir: Path,
    on_output: Callable[[str], None],
    should_stop: Callable[[], bool],
) -> TrainingOutcome:
    result = sandbox.run(
        ["python", TRAIN_SCRIPT],
        timeout=timeout,
        on_output=on_output,
        should_stop=should_stop,
        network=False,
    )
    if result.cancelled:
        raise JobCancelled("the job was cancelled during training")
    if result.timed_out:
        raise TrainingError(
            f"training did not finish within {timeout:.0f} seconds and was stopped",
            detail=result.log_tail(),
        )
    if result.exit_code != 0:
        raise TrainingError(
            f"the training script failed (exit code {result.exit_code}): {last_error_line(result)}",
            detail=result.log_tail(),
        )
    metrics = _read_json(sandbox, METRICS_FILE)
    schema = _read_json(sandbox, SCHEMA_FILE)
    _check_metrics(metrics)
    artifacts = _collect(sandbox, artifacts_dir)
    return TrainingOutcome(metrics=metrics, schema=schema, artifacts=artifacts)


def last_error_line(result: CommandResult) -> str:
    """The line of a traceback that says what went wrong, e.g. 'ValueError: ...'."""
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return lines[-1][:300] if lines else "it printed nothing"


def _read_json(sandbox: Sandbox, name: str) -> dict[str, Any]:
    try:
        data = json.loads(sandbox.read_file(name))
    except FileNotFoundError as error:
        raise TrainingError(f"the training script finished but did not write {name}") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise TrainingError(
            f"the training script wrote {name}, but it is not valid JSON"
        ) from error
    if not isinstance(data, dict):
        raise TrainingError(f"{name} should hold a JSON object")
    return data


def _check_metrics(metrics: dict[str, Any]) -> None:
    for key in ("metric", "score", "baseline"):
        if key not in metrics:
            raise TrainingError(f"{METRICS_FILE} has no '{key}'")
    for key in ("score", "baseline"):
        value = metrics[key]
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise TrainingError(f"{METRICS_FILE} '{key}' is not a number: {value!r}")


def _collect(sandbox: Sandbox, artifacts_dir: Path) -> dict[str, str]:
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    collected: dict[str, str] = {}
    outputs = (MODEL_FILE, METRICS_FILE, SCHEMA_FILE, CHART_FILE, TRAIN_SCRIPT, "app.py")
    for name in (*outputs, SEARCH_MODULE):  # the template's search, when it is there
        path = artifacts_dir / name
        try:
            sandbox.read_file_to(name, path)  # streamed to disk: a model may be large
        except FileNotFoundError:
            if name == MODEL_FILE:
                raise TrainingError(f"the training script did not write {MODEL_FILE}") from None
            continue
        collected[name] = str(path)
    return collected
