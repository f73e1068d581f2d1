"""The cloud sandbox: generated code runs in an E2B sandbox, a microVM of its own.

Built against the official SDK (`e2b-code-interpreter` 2.x, its synchronous API). The API key
travels only as an argument of the SDK calls; the code's environment is `ENVS` plus what a
command is given, never the service's own environment.

Network: E2B's `allow_internet_access` closes only outbound traffic; the sandbox's public URL
(`get_host(port)`) stays reachable. So every sandbox starts without internet access, and a
command that needs it (`run(network=True)`, `install`) opens it for its own duration.

Lifetime: the plan caps a sandbox's life, counted from its start (1 hour on Hobby, 24 on Pro;
https://e2b.dev/docs/sandbox), and `set_timeout` past the cap is clamped without a word
(github.com/e2b-dev/infra, packages/api/internal/orchestrator/keep_alive.go). So after every
extension the real end is read back (`get_info().end_at`). The SDK cannot tell the plan:
`max_lifetime` comes from the settings, and no extension asks for more.

A sandbox outlives the process that made it (a remote VM): any process extends or kills it by
id through the SDK's class-method variants (`Sandbox.set_timeout(sandbox_id, ...)`).

One sandbox in E2B::

    /home/user/job/   the working directory: task.json, data.csv, the generated scripts
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from e2b_code_interpreter import (
    FileNotFoundException,
    NotFoundException,
    Sandbox,
    TimeoutException,
)

from pipeline.errors import SandboxError
from pipeline.sandbox.base import CommandResult, SandboxGone
from pipeline.sandbox.e2b_commands import (
    Server,
    Waiter,
    follow,
    kill_group_command,
    shell_command,
)
from pipeline.sandbox.e2b_errors import (
    APP_GONE,
    GONE,
    SDK_ERRORS,
    START_TIMEOUT,
    retryable,
    sdk_errors,
    short,
    stream_lost,
    translate,
)

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "code-interpreter-v1"
WORKDIR = "/home/user/job"
APP_PORT = 8000
HOBBY_MAX_LIFETIME = 3600  # seconds; Pro allows 86_400 (the SDK's set_timeout docstring)
# The sandbox-wide environment. Nothing of the service's: its secrets stay on this side.
ENVS = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}
JOB_ID_KEY = "trainbot_job_id"  # sandbox metadata naming the job, visible in E2B's dashboard

_SANDBOX_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_LIFETIME_SLACK = 300  # sandbox life beyond a command's timeout: uploads, downloads, app start
_STREAM_SLACK = 30  # the SDK's stream deadline trails ours: we stop commands ourselves
_KILL_TIMEOUT = 15  # seconds for the command that kills a process group


def _sandbox_path(path: str) -> str:
    pure = PurePosixPath(path)
    parts = [part for part in pure.parts if part != "."]
    if not path or "\x00" in path or pure.is_absolute() or not parts or ".." in parts:
        raise SandboxError(f"The path {path!r} is not a relative path inside the sandbox.")
    return "/".join([WORKDIR, *parts])


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class _Lifetime(Protocol):
    """What extending needs of the SDK: a Sandbox, or its class bound to one id and key."""

    def set_timeout(self, timeout: int) -> None: ...

    def get_info(self) -> Any: ...


class _ById:
    """The SDK's class-method variants bound to one sandbox id: no Sandbox object needed
    (e2b/sandbox_sync/main.py `class_method_variant("_cls_set_timeout")`, `"_cls_get_info"`)."""

    def __init__(self, sandbox_class: Any, sandbox_id: str, api_key: str) -> None:
        self._class = sandbox_class
        self._id = sandbox_id
        self._api_key = api_key

    def set_timeout(self, timeout: int) -> None:
        self._class.set_timeout(self._id, timeout, api_key=self._api_key)

    def get_info(self) -> Any:
        return self._class.get_info(self._id, api_key=self._api_key)


def _extend(sdk: _Lifetime, seconds: int, *, cap: int) -> datetime:
    """Keep a sandbox alive `seconds` from now (never asking past the plan's `cap`); return the
    end E2B really set, which the cap counted from the sandbox's start may make earlier still.

    Gone (the API's 404 as SandboxNotFoundException) is SandboxGone, via `translate`.
    """
    with sdk_errors("extend the sandbox's lifetime"):
        sdk.set_timeout(min(max(0, int(seconds)), cap))
        return _utc(sdk.get_info().end_at)


class E2BSandbox:
    """One E2B sandbox. Made by `E2BSandboxProvider.create`."""

    def __init__(
        self,
        sdk: Any,
        *,
        template: str,
        lifetime: int,
        cap: int,
        app_port: int,
        url_scheme: str,
    ) -> None:
        self._sdk = sdk  # the SDK's Sandbox
        self._cap = cap  # the plan's cap on its life: no extension asks for more
        self.id: str = sdk.sandbox_id
        self.isolation = (
            f"E2B cloud sandbox {self.id} (template {template}): its own VM, none of the "
            "service's secrets, no outbound internet unless a command needs it (pip)"
        )
        self._app_port = app_port
        self._url_scheme = url_scheme
        # A moment after E2B's own end (its clock started during create); extensions read it.
        self._ends = datetime.now(UTC) + timedelta(seconds=lifetime)
        self._server: Server | None = None
        self._stopping = False  # kill() was called: a running command ends as cancelled
        self._killed = False

    def prepare(self) -> None:
        """Make the working directory, where every command starts."""
        with sdk_errors("prepare the sandbox"):
            self._sdk.files.make_dir(WORKDIR)

    # -- files ----------------------------------------------------------------------------

    def write_file(self, path: str, data: bytes | str) -> None:
        """Write small `data` to `path` relative to the working directory.

        One in-memory request, which the SDK cuts at its request deadline (60 s): anything
        large goes through `write_file_from`.
        """
        target = _sandbox_path(path)
        self._check_alive()
        with sdk_errors(f"write {path} into the sandbox"):
            self._sdk.files.write(target, data)

    def write_file_from(self, path: str, source: Path) -> None:
        """Upload the local file `source` to `path`, streamed from disk without a deadline."""
        target = _sandbox_path(path)
        self._check_alive()
        with source.open("rb") as file:
            # A binary file object is sent as an octet stream in chunks, with no client-side
            # deadline (e2b/sandbox_sync/filesystem/filesystem.py `write_files`).
            with sdk_errors(f"upload {path} into the sandbox"):
                self._sdk.files.write(target, file)

    def read_file(self, path: str) -> bytes:
        """Read a small file at `path` relative to the working directory (one request).

        FileNotFoundError if it is missing. A link the code planted is followed inside the VM,
        which holds nothing of the service's.
        """
        target = _sandbox_path(path)
        self._check_alive()
        try:
            return bytes(self._sdk.files.read(target, format="bytes"))
        except FileNotFoundException as error:
            raise FileNotFoundError(path) from error
        except SDK_ERRORS as error:
            raise translate(error, f"read {path} from the sandbox") from error

    def read_file_to(self, path: str, target: Path) -> None:
        """Download `path` into the local file `target`, streamed to disk without a deadline.

        FileNotFoundError if it is missing; `target` appears only once the whole file arrived.
        """
        remote = _sandbox_path(path)
        self._check_alive()
        action = f"download {path} from the sandbox"
        partial = target.with_name(target.name + ".part")
        try:
            with partial.open("wb") as out:
                try:  # a stream has no total deadline, only an idle one (60 s between chunks)
                    stream = self._sdk.files.read(remote, format="stream")
                except FileNotFoundException as error:
                    raise FileNotFoundError(path) from error
                except SDK_ERRORS as error:
                    raise translate(error, action) from error
                with stream:
                    for chunk in _chunks(stream, action):
                        out.write(chunk)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)

    # -- commands -------------------------------------------------------------------------

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
        """Run to completion (or timeout / stop), streaming output lines to `on_output`.

        `on_output` is called on this thread. A non-zero exit is a result, not an error.
        """
        emit = on_output or (lambda _line: None)
        shell = shell_command(command)
        self._check_alive()
        self._keep_alive_for(timeout)
        with self._internet(network):
            with sdk_errors("start a command in the sandbox"):
                handle = self._sdk.commands.run(
                    shell,
                    background=True,
                    envs=dict(env or {}),
                    cwd=WORKDIR,
                    timeout=timeout + _STREAM_SLACK,
                    retain_output=False,  # Output keeps the tails
                )
            return follow(
                handle,
                timeout=timeout,
                emit=emit,
                should_stop=should_stop,
                stopping=lambda: self._stopping,
                stop=self._stop,
            )

    def install(self, requirements: list[str], *, timeout: float) -> None:
        """pip-install extra packages, with internet access for the install only."""
        if not requirements:
            return
        for requirement in requirements:
            if not requirement or requirement.startswith("-") or requirement != requirement.strip():
                raise SandboxError(f"{requirement!r} is not a package requirement.")
        pip = ["python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        result = self.run([*pip, "--no-input", *requirements], timeout=timeout, network=True)
        if not result.ok:
            why = "timed out" if result.timed_out else f"failed (exit code {result.exit_code})"
            raise SandboxError(
                f"installing {', '.join(requirements)} in the sandbox {why}",
                detail=result.log_tail(),
            )

    def start_server(
        self, command: list[str], *, port: int, env: Mapping[str, str] | None = None
    ) -> None:
        """Start a long-running process in the background; PORT defaults to `port`."""
        if self._server is not None and self._server.result() is None:
            raise SandboxError("A server is already running in this sandbox.")
        shell = shell_command(command)
        self._check_alive()
        self._keep_alive_for(0)
        with sdk_errors("start the app in the sandbox"):
            handle = self._sdk.commands.run(
                shell,
                background=True,
                envs={"PORT": str(port), **(env or {})},
                cwd=WORKDIR,
                timeout=0,  # the SDK's default of 60 s would end the server with its stream
                retain_output=False,
            )
        self._server = Server(handle)

    def server_exited(self) -> CommandResult | None:
        return None if self._server is None else self._server.result()

    def app_port(self) -> int:
        return self._app_port

    def url_for(self, port: int) -> str:
        return f"{self._url_scheme}://{self._sdk.get_host(port)}"

    # -- lifetime -------------------------------------------------------------------------

    def extend(self, seconds: int) -> datetime:
        """Keep the sandbox (and so the app) alive `seconds` from now, no longer.

        Returns when E2B will really stop it: earlier than asked once the plan's cap is near.
        """
        self._check_alive()
        self._ends = _extend(self._sdk, seconds, cap=self._cap)
        return self._ends

    def kill(self) -> None:
        """Kill the sandbox in E2B. Idempotent; a sandbox already gone counts as killed."""
        self._stopping = True
        if self._killed:
            return
        try:
            with sdk_errors("stop the sandbox"):
                self._sdk.kill()  # False when E2B no longer knows it
        except SandboxError as error:
            if error.message != GONE:
                raise
        self._killed = True

    # -- inside ---------------------------------------------------------------------------

    def _stop(self, waiter: Waiter) -> None:
        """Kill the command's process group (all it spawned), then the command itself."""
        if not self._stopping:  # a sandbox being killed takes every process with it
            try:
                self._sdk.commands.run(
                    kill_group_command(waiter.handle.pid),
                    timeout=_KILL_TIMEOUT,
                    request_timeout=_KILL_TIMEOUT,
                )
            except SDK_ERRORS:
                pass  # exit status 1: the group is gone already
            except Exception as error:  # noqa: BLE001 - the SDK's plain end-of-stream error
                if not stream_lost(error):
                    raise
        waiter.stop()

    @contextmanager
    def _internet(self, wanted: bool) -> Iterator[None]:
        """Outbound internet access for the duration of one command, when it asks for it."""
        if not wanted:
            yield
            return
        with sdk_errors("open the sandbox's internet access"):
            self._sdk.update_network({"allow_internet_access": True})
        try:
            yield
        finally:
            try:
                with sdk_errors("close the sandbox's internet access"):
                    self._sdk.update_network({"allow_internet_access": False})
            except SandboxError:
                # The app must not run with the internet open: give up on this sandbox.
                with suppress(SandboxError):
                    self.kill()
                raise

    def _keep_alive_for(self, seconds: float) -> None:
        """Make sure the sandbox outlives the next step by `_LIFETIME_SLACK` seconds."""
        needed = int(seconds) + _LIFETIME_SLACK
        now = datetime.now(UTC)
        if now + timedelta(seconds=needed) <= self._ends:
            return
        ends = self.extend(needed)
        if ends < now + timedelta(seconds=seconds):
            log.warning(
                "E2B sandbox %s stops at %s, before a step of %.0f s can end (the plan's cap)",
                self.id,
                ends.isoformat(timespec="seconds"),
                seconds,
            )

    def _check_alive(self) -> None:
        if self._stopping:
            raise SandboxError("The sandbox was stopped.")


def _chunks(stream: Iterator[bytes], action: str) -> Iterator[bytes]:
    """A download's chunks; an SDK or transport error mid-way as a plain reason."""
    while True:
        with sdk_errors(action):
            chunk = next(stream, None)
        if chunk is None:
            return
        yield chunk


HOBBY_CONCURRENT_SANDBOXES = 20
# A job in an E2B sandbox costs its worker a thread that waits on an HTTP stream (training
# runs in the VM), about 20 KB resident: one worker drives many. The plan's sandbox cap
# (concurrent_limit, or TRAINBOT_SANDBOX_LIMIT) still holds across workers.
REMOTE_CONCURRENT_JOBS = 50


class E2BSandboxProvider:
    """Sandboxes in E2B's cloud, one per job.

    `max_lifetime` is the plan's cap on a sandbox's life in seconds (Hobby 3600, Pro 86_400),
    which the SDK cannot tell. `url_scheme` is "https" in production; tests against a fake of
    the SDK use "http" (the SDK's own debug mode serves plain http on localhost too).
    `app_port` is where the app listens inside the sandbox; tests pick a free local port.
    """

    name = "e2b"
    isolates_network = True  # a remote VM, outbound internet closed while the app serves
    survives_worker = True  # the VM serves on when the worker that made it exits
    # E2B runs 20 sandboxes at once on Hobby, 100 on Pro (e2b.dev/docs/sandbox/rate-limits);
    # past that, create fails with 429 (e2b_errors.BUSY). Waiting in our queue is kinder.
    concurrent_limit: int | None = HOBBY_CONCURRENT_SANDBOXES
    concurrent_jobs = REMOTE_CONCURRENT_JOBS

    def __init__(
        self,
        *,
        api_key: str,
        template: str = DEFAULT_TEMPLATE,
        max_lifetime: int = HOBBY_MAX_LIFETIME,
        sandbox_class: type = Sandbox,
        rate_limit_retries: int = 3,
        retry_wait: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        url_scheme: str = "https",
        app_port: int = APP_PORT,
    ) -> None:
        if not api_key:
            raise ValueError("E2BSandboxProvider needs an API key")
        if url_scheme not in ("https", "http"):
            raise ValueError(f"url_scheme must be 'https' or 'http', not {url_scheme!r}")
        if max_lifetime <= 0:
            raise ValueError("max_lifetime must be a positive number of seconds")
        self.max_lifetime: int | None = max_lifetime
        self._cap = max_lifetime
        self._api_key = api_key
        self._template = template
        self._sandbox_class: Any = sandbox_class
        self._retries = max(0, rate_limit_retries)
        self._retry_wait = retry_wait
        self._sleep = sleep
        self._url_scheme = url_scheme
        self._app_port = app_port

    def create(self, *, job_id: str, timeout: int) -> E2BSandbox:
        """A new sandbox that lives `timeout` seconds plus slack; each command extends it.

        E2B refuses a first lifetime past the plan's cap, so it asks for the cap at most.
        """
        lifetime = min(int(timeout) + _LIFETIME_SLACK, self._cap)
        sdk = self._start(job_id, lifetime)
        try:
            sandbox = E2BSandbox(
                sdk,
                template=self._template,
                lifetime=lifetime,
                cap=self._cap,
                app_port=self._app_port,
                url_scheme=self._url_scheme,
            )
            sandbox.prepare()
        except BaseException:  # nothing is billed for a sandbox that never served a job
            with suppress(Exception):
                sdk.kill()
            raise
        return sandbox

    def kill(self, sandbox_id: str) -> bool:
        """Kill a sandbox by id, also one created by an earlier process. True if it was found."""
        if not _SANDBOX_ID.fullmatch(sandbox_id):
            return False
        try:
            return bool(self._sandbox_class.kill(sandbox_id, api_key=self._api_key))
        except NotFoundException:
            return False
        except SDK_ERRORS as error:
            raise translate(error, "stop a sandbox") from error

    def extend(self, sandbox_id: str, seconds: int) -> datetime:
        """Keep a sandbox alive `seconds` from now, also one created by another process.

        Returns when E2B will really stop it (UTC). SandboxGone once E2B no longer knows it.
        """
        if not _SANDBOX_ID.fullmatch(sandbox_id):  # not one of E2B's ids: nothing to extend
            raise SandboxGone(APP_GONE, detail=f"{sandbox_id!r} is not an E2B sandbox id")
        try:
            return _extend(
                _ById(self._sandbox_class, sandbox_id, self._api_key), seconds, cap=self._cap
            )
        except SandboxGone as error:  # said of the app: the caller has no sandbox in hand
            raise SandboxGone(APP_GONE, detail=error.detail) from error

    def _start(self, job_id: str, lifetime: int) -> Any:
        attempt = 0
        while True:
            try:
                return self._sandbox_class.create(
                    template=self._template,
                    timeout=lifetime,
                    metadata={JOB_ID_KEY: job_id},
                    envs=dict(ENVS),
                    # Outbound only: the app's public URL works either way.
                    allow_internet_access=False,
                    api_key=self._api_key,
                )
            except TimeoutException as error:
                raise SandboxError(START_TIMEOUT, detail=short(error)) from error
            except SDK_ERRORS as error:
                if not retryable(error) or attempt >= self._retries:
                    raise translate(error, "start a sandbox") from error
                attempt += 1
                log.warning(
                    "E2B refused a sandbox (%s); retry %d of %d in %.0f s",
                    short(error),
                    attempt,
                    self._retries,
                    self._retry_wait,
                )
                self._sleep(self._retry_wait)
