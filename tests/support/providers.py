"""A sandbox provider that only reports its cap, for code that asks before any sandbox exists."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipeline.sandbox.base import Sandbox, SandboxGone


@dataclass
class CappedProvider:
    """What the `/train` form and `trainbot run` read from a provider: its name and cap.

    It makes no sandboxes: a test that uses it must never get as far as running a job.
    """

    name: str
    max_lifetime: int | None
    isolates_network: bool = True
    survives_worker: bool = True
    concurrent_limit: int | None = None
    concurrent_jobs: int = 1

    def create(self, *, job_id: str, timeout: int) -> Sandbox:
        raise AssertionError("CappedProvider makes no sandboxes")

    def kill(self, sandbox_id: str) -> bool:
        return False  # nothing was ever made, so nothing is found

    def extend(self, sandbox_id: str, seconds: int) -> datetime:
        raise SandboxGone("the app is gone", detail="CappedProvider makes no sandboxes")
