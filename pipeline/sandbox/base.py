"""What a sandbox offers. Mirrors the E2B sandbox so the cloud provider drops in.

Generated code is untrusted: a sandbox runs it with an environment built from an
allow-list (never the service's own environment) and away from the service's files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pipeline.errors import SandboxError
from pipeline.limits import FAILURE_LOG_LINES


class SandboxGone(SandboxError):
    """The sandbox no longer exists (expired, killed, or its worker exited): its app is gone.

    A caller extending or checking a live app by id catches this to record the app's end,
    and lets any other SandboxError (a refused key, E2B unreachable) pass as a failure to retry.
    """


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None  # None when the command was killed before it exited
    stdout: str  # tail of standard output
    stderr: str  # tail of standard error
    timed_out: bool = False
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.cancelled

    def log_tail(self, lines: int = FAILURE_LOG_LINES) -> str:
        """The end of what it printed (standard error first), as a failure's detail."""
        text = self.stderr.strip() or self.stdout.strip()
        return "\n".join(text.splitlines()[-lines:])


class Sandbox(Protocol):
    id: str
    isolation: str  # one line for the log: which isolation is active

    def write_file(self, path: str, data: bytes | str) -> None:
        """Write small `data` (scripts, JSON) to `path` relative to the working directory."""
        ...

    def write_file_from(self, path: str, source: Path) -> None:
        """Copy the local file `source` to `path`, streamed: a data set may be large."""
        ...

    def read_file(self, path: str) -> bytes:
        """A small file's content. FileNotFoundError if it is missing."""
        ...

    def read_file_to(self, path: str, target: Path) -> None:
        """Copy `path` to the local file `target`, streamed: a model may be large.

        FileNotFoundError if it is missing.
        """
        ...

    def run(
        self,
        command: list[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        on_output: Callable[[str], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        network: bool = False,
    ) -> CommandResult:
        """Run to completion (or timeout / stop), streaming output lines to `on_output`."""
        ...

    def start_server(
        self, command: list[str], *, port: int, env: Mapping[str, str] | None = None
    ) -> None:
        """Start a long-running process in the background with no command timeout."""
        ...

    def server_exited(self) -> CommandResult | None:
        """The background server's result if it has exited, else None."""
        ...

    def app_port(self) -> int:
        """A port the app may listen on inside the sandbox."""
        ...

    def url_for(self, port: int) -> str:
        """The URL at which the world reaches `port` (E2B: https://{get_host(port)})."""
        ...

    def extend(self, seconds: int) -> datetime:
        """Ask for `seconds` more life from now; return when the sandbox will really stop (UTC).

        A provider may stop earlier than asked (E2B clamps to the plan's cap), so callers record
        the returned time, not their own arithmetic.
        """
        ...

    def kill(self) -> None: ...


class SandboxProvider(Protocol):
    name: str
    # The longest an app can stay up in this provider's sandboxes, in seconds (None: no cap).
    max_lifetime: int | None
    # True when code in its sandboxes can dial neither the host's services nor the internet
    # while it serves (E2B: a remote VM without internet; local: its own network namespace).
    isolates_network: bool
    # True when a sandbox keeps serving after the process that created it exits (E2B: a remote
    # VM), so any worker may extend or stop it by id; False when the app needs its creator
    # (local: the worker relays the app's port and its processes die with it).
    survives_worker: bool
    # Sandboxes the provider lets run at once, across every process on one account (None: no
    # limit of its own). Running jobs and live apps both count. TRAINBOT_SANDBOX_LIMIT wins.
    concurrent_limit: int | None
    # Jobs one worker runs at once in these sandboxes unless TRAINBOT_MAX_CONCURRENT_JOBS says
    # otherwise: local sandboxes train on this machine's cores; a remote one's job only waits.
    concurrent_jobs: int

    def create(self, *, job_id: str, timeout: int) -> Sandbox: ...

    def kill(self, sandbox_id: str) -> bool:
        """Kill a sandbox by id, even one created by an earlier process. True if it was found."""
        ...

    def extend(self, sandbox_id: str, seconds: int) -> datetime:
        """Ask for `seconds` more life from now for the sandbox `sandbox_id`, made by any process.

        Returns when it will really stop (UTC), as `Sandbox.extend` does: never later than the
        provider's cap allows. SandboxGone if the sandbox no longer exists (or the id is not one
        of this provider's); another SandboxError if the provider could not be asked.
        """
        ...
