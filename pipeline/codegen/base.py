"""The code-generation interface: a task in, a training script and an app out."""

from __future__ import annotations

import enum
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from pipeline.budget import DEFAULT_BUDGET


class TaskType(enum.StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    dtype: str  # pandas dtype as text
    kind: str  # "number" | "category" | "date" | "id" | "text" | "bool"
    missing: int
    unique: int
    examples: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class TaskSpec:
    """Everything a generator may know about the job. Written to the sandbox as task.json."""

    name: str
    goal: str
    task: TaskType
    target: str  # the exact column name in data.csv
    data_file: str  # file name in the sandbox working directory, "data.csv"
    columns: list[ColumnInfo]
    n_rows: int
    sample_rows: list[dict[str, Any]]  # a handful of rows, never the whole data set
    classes: list[Any] = field(default_factory=list)
    # Wall-time seconds the training search should spend, then stop (the job's budget; the
    # runner sets it, so the default only serves specs built outside a job).
    time_budget_seconds: float = float(DEFAULT_BUDGET)

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["task"] = self.task.value
        return data


@dataclass(frozen=True)
class Resource:
    url: str
    text: str  # extracted text, trimmed


@dataclass(frozen=True)
class GeneratedCode:
    files: dict[str, str]  # must hold "train.py" and "app.py"
    requirements: list[str] = field(default_factory=list)
    notes: str = ""
    provider: str = ""


@dataclass(frozen=True)
class CodeFailure:
    """Why generated code did not work, as it goes back to the generator for a repair."""

    stage: str  # "codegen" (rejected before running), "train" or "deploy"
    message: str  # one line, as the user sees it
    log: str = ""  # a trimmed traceback or log tail


class CodeGenerator(Protocol):
    name: str
    can_repair: bool  # False: a failure of its code is final (the offline template)

    def generate(self, spec: TaskSpec, resources: list[Resource]) -> GeneratedCode:
        """Raises CodegenUnavailable when the provider cannot be reached (the runner then
        falls back to the template) and InvalidCode when its answer cannot be used."""
        ...

    def repair(
        self,
        spec: TaskSpec,
        resources: list[Resource],
        previous: GeneratedCode,
        failure: CodeFailure,
    ) -> GeneratedCode:
        """A corrected version of `previous`; same errors as `generate`."""
        ...


@runtime_checkable
class CheckedAtStart(Protocol):
    """A generator that checks its configuration against its service once, at start."""

    def start_check(self) -> threading.Thread:
        """Starts the check in the background: logs what is wrong (and remembers it for the
        jobs, which wait for the verdict); never raises."""
        ...
