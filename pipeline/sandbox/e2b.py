"""The cloud sandbox: generated code runs in an E2B sandbox, a microVM of its own.

Built against the official SDK (`e2b-code-interpreter` 2.x, its synchronous API). The API key
travels only as an argument of the SDK calls; the code's environment is `ENVS` plus what a
command is given, never the service's own environment.

Network: E2B's `allow_internet_access` closes only outbound traffic; the sandbox's public URL
(`get_host(port)`) stays reachable. So every sandbox starts without internet access, and a
command that needs it (`run(network=True)`, `install`) opens it for its own duration.

One sandbox in E2B::

    /home/user/job/   the working directory: task.json, data.csv, the generated scripts
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import PurePosixPath
from queue import Empty, SimpleQueue
from typing import Any

import httpx
from e2b_code_interpreter import (
    AuthenticationException,
    CommandExitException,
    FileNotFoundException,
    NotFoundException,
    RateLimitException,
    Sandbox,
    SandboxException,
    SandboxNotRunningException,
    SandboxUnreachableException,
    ServiceBusyException,
    TimeoutException,
)

from pipeline.errors import SandboxError
from pipeline.sandbox.base import CommandResult

log = logging.getLogger(__name__)

DEFAULT_TEMPLATE = "code-interpreter-v1"
WORKDIR = "/home/user/job"
APP_PORT = 8000
# The sandbox-wide environment. Nothing of the service's: its secrets stay on this side.
ENVS = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg"}
JOB_ID_KEY = "trainbot_job_id"  # sandbox metadata naming the job, visible in E2B's dashboard

AUTH_REFUSED = "E2B refused the API key (check E2B_API_KEY)"
RATE_LIMITED = "E2B's rate or concurrency limit was reached; try again later"
BUSY = "E2B has no capacity for a sandbox right now; try again later"
GONE = "the E2B sandbox is gone (expired or killed)"
UNREACHABLE = "the E2B sandbox could not be reached"
START_TIMEOUT = "E2B did not start a sandbox in time"

_PYTHON_NAMES = frozenset({"python", "python3"})
_SANDBOX_ID = re.compile(r"[A-Za-z0-9-]{1,64}")
_LIFETIME_SLACK = 300  # sandbox life beyond a command's timeout: uploads, downloads, app start
_STREAM_SLACK = 30  # the SDK's stream deadline trails ours: we stop commands ourselves
_TAIL_LINES = 200
_TAIL_CHARS = 20_000
_MAX_LINE = 64 * 1024
_POLL = 0.2
_DRAIN_GRACE = 5.0
# What the SDK raises: its own errors (AuthenticationException and ServiceBusyException are
# not SandboxExceptions) and transport errors that slip past its mapping.
_SDK_ERRORS: tuple[type[BaseException], ...] = (
    SandboxException,
    AuthenticationException,
    ServiceBusyException,
    httpx.HTTPError,
    OSError,
)


def _short(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:200]


def _translate(error: BaseException, action: str) -> SandboxError:
    """An SDK error as a message for the person who started the job; the SDK's text is detail."""
    if isinstance(error, AuthenticationException):
        message = AUTH_REFUSED
    elif isinstance(error, RateLimitException) or getattr(error, "status_code", None) == 429:
        message = RATE_LIMITED
    elif isinstance(error, ServiceBusyException):
        message = BUSY
    elif isinstance(error, SandboxNotRunningException | NotFoundException):
        message = GONE  # NotFoundException covers SandboxNotFoundException (the API's 404)
    elif isinstance(error, SandboxUnreachableException):
        message = UNREACHABLE
    elif isinstance(error, TimeoutException):
        message = f"E2B did not answer in time while trying to {action}"
    elif isinstance(error, httpx.HTTPError | OSError):
        message = f"could not reach E2B to {action}"
    else:
        message = f"E2B could not {action} ({_short(error)})"
    return SandboxError(message, detail=f"{type(error).__name__}: {error}")


@contextmanager
def _sdk_errors(action: str) -> Iterator[None]:
    try:
        yield
    except _SDK_ERRORS as error:
        raise _translate(error, action) from error


def _retryable(error: BaseException) -> bool:
    """Rate and concurrency limits (429) and a busy service (503) pass with time."""
    return isinstance(error, RateLimitException | ServiceBusyException) or (
        getattr(error, "status_code", None) == 429
    )


def _shell_command(command: list[str]) -> str:
    """The SDK runs a string under `bash -l -c`; `exec` makes the command the process it kills."""
    if not command:
        raise SandboxError("No command to run.")
    argv = ["python3" if command[0] in _PYTHON_NAMES else command[0], *command[1:]]
    return "exec " + shlex.join(argv)


def _sandbox_path(path: str) -> str:
    pure = PurePosixPath(path)
    parts = [part for part in pure.parts if part != "."]
    if not path or "\x00" in path or pure.is_absolute() or not parts or ".." in parts:
        raise SandboxError(f"The path {path!r} is not a relative path inside the sandbox.")
    return "/".join([WORKDIR, *parts])


class _Output:
    """A command's output chunks cut into lines, keeping the last lines of each stream."""

    def __init__(self) -> None:
        self._partial = {"stdout": "", "stderr": ""}
        self._tails: dict[str, deque[str]] = {
            name: deque(maxlen=_TAIL_LINES) for name in self._partial
        }

    def feed(self, stream: str, chunk: str) -> list[str]:
        *lines, rest = (self._partial[stream] + chunk).split("\n")
        if len(rest) > _MAX_LINE:
            lines.append(rest)
            rest = ""
        self._partial[stream] = rest
        return self._keep(stream, [line.removesuffix("\r") for line in lines])

    def flush(self) -> list[str]:
        """The unterminated last line of each stream."""
        lines: list[str] = []
        for stream, rest in self._partial.items():
            if rest:
                self._partial[stream] = ""
                lines += self._keep(stream, [rest.removesuffix("\r")])
        return lines

    def note(self, line: str) -> str:
        self._tails["stderr"].append(line)
        return line

    def tail(self, stream: str) -> str:
        return "\n".join(self._tails[stream])[-_TAIL_CHARS:]

    def result(self, exit_code: int | None, **flags: bool) -> CommandResult:
        return CommandResult(
            exit_code=exit_code, stdout=self.tail("stdout"), stderr=self.tail("stderr"), **flags
        )

    def _keep(self, stream: str, lines: list[str]) -> list[str]:
        self._tails[stream].extend(lines)
        return lines


class _Waiter:
    """Waits on a command's handle on a thread: its output chunks go to `sink`."""

    def __init__(self, handle: Any, sink: Callable[[str, str], object], name: str) -> None:
        self.handle = handle
        self.exit_code: int | None = None
        self.stopped_by = ""  # the sandbox's word when a signal ended the command
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._sink = sink
        threading.Thread(target=self._wait, name=name, daemon=True).start()

    def _wait(self) -> None:
        try:
            self.handle.wait(
                on_stdout=lambda chunk: self._sink("stdout", chunk),
                on_stderr=lambda chunk: self._sink("stderr", chunk),
            )
            self.exit_code = 0
        except CommandExitException as exited:
            self.exit_code = exited.exit_code
            if "signal" in (exited.error or ""):
                self.stopped_by = exited.error or ""
        except BaseException as error:  # noqa: BLE001 - handed to the thread that reads it
            self.error = error
        finally:
            self.done.set()

    def stop(self) -> None:
        """Kill the command (SIGKILL) and give its last output a moment to arrive."""
        with suppress(*_SDK_ERRORS):
            self.handle.kill()
        self.done.wait(_DRAIN_GRACE)

    def deadline_passed(self) -> bool:
        """The SDK's own stream deadline ended the wait (not the sandbox going away)."""
        gone = SandboxNotRunningException | SandboxUnreachableException
        return isinstance(self.error, TimeoutException) and not isinstance(self.error, gone)


class _Server:
    """The app running in the background, its output kept until it exits."""

    def __init__(self, handle: Any) -> None:
        self._output = _Output()
        self._waiter = _Waiter(handle, self._output.feed, name="e2b-server")
        self._result: CommandResult | None = None

    def result(self) -> CommandResult | None:
        """How the app ended; None while it runs, or when only our view of it was lost."""
        if self._result is None and self._waiter.done.is_set():
            error = self._waiter.error
            if error is not None and _translate(error, "follow the app").message != GONE:
                return None  # a dropped stream: the app may well be serving still
            self._output.flush()
            if error is not None:
                self._output.note(f"[sandbox] {GONE}")
            elif self._waiter.stopped_by:
                self._output.note(f"[sandbox] stopped: {self._waiter.stopped_by}")
            self._result = self._output.result(self._waiter.exit_code)
        return self._result


class E2BSandbox:
    """One E2B sandbox. Made by `E2BSandboxProvider.create`."""

    def __init__(
        self,
        sdk: Any,
        *,
        template: str,
        lifetime: int,
        app_port: int,
        url_scheme: str,
    ) -> None:
        self._sdk = sdk  # the SDK's Sandbox
        self.id: str = sdk.sandbox_id
        self.isolation = (
            f"E2B cloud sandbox {self.id} (template {template}): its own VM, none of the "
            "service's secrets, no outbound internet unless a command needs it (pip)"
        )
        self._app_port = app_port
        self._url_scheme = url_scheme
        self._expires = time.monotonic() + lifetime
        self._server: _Server | None = None
        self._stopping = False  # kill() was called: a running command ends as cancelled
        self._killed = False

    def prepare(self) -> None:
        """Make the working directory, where every command starts."""
        with _sdk_errors("prepare the sandbox"):
            self._sdk.files.make_dir(WORKDIR)

    def write_file(self, path: str, data: bytes | str) -> None:
        """Write `path` relative to the working directory, creating folders as needed."""
        target = _sandbox_path(path)
        self._check_alive()
        with _sdk_errors(f"write {path} into the sandbox"):
            self._sdk.files.write(target, data)

    def read_file(self, path: str) -> bytes:
        """Read `path` relative to the working directory. FileNotFoundError if it is missing.

        A link the code planted is followed inside the VM, which holds nothing of the service's.
        """
        target = _sandbox_path(path)
        self._check_alive()
        try:
            return bytes(self._sdk.files.read(target, format="bytes"))
        except FileNotFoundException as error:
            raise FileNotFoundError(path) from error
        except _SDK_ERRORS as error:
            raise _translate(error, f"read {path} from the sandbox") from error

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
        shell = _shell_command(command)
        self._check_alive()
        self._keep_alive_for(timeout)
        with self._internet(network):
            with _sdk_errors("start a command in the sandbox"):
                handle = self._sdk.commands.run(
                    shell,
                    background=True,
                    envs=dict(env or {}),
                    cwd=WORKDIR,
                    timeout=timeout + _STREAM_SLACK,
                    retain_output=False,  # _Output keeps the tails
                )
            return self._follow(handle, timeout, emit, should_stop)

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
                detail=(result.stderr or result.stdout)[-2000:],
            )

    def start_server(
        self, command: list[str], *, port: int, env: Mapping[str, str] | None = None
    ) -> None:
        """Start a long-running process in the background; PORT defaults to `port`."""
        if self._server is not None and self._server.result() is None:
            raise SandboxError("A server is already running in this sandbox.")
        shell = _shell_command(command)
        self._check_alive()
        self._keep_alive_for(0)
        with _sdk_errors("start the app in the sandbox"):
            handle = self._sdk.commands.run(
                shell,
                background=True,
                envs={"PORT": str(port), **(env or {})},
                cwd=WORKDIR,
                timeout=0,  # the SDK's default of 60 s would end the server with its stream
                retain_output=False,
            )
        self._server = _Server(handle)

    def server_exited(self) -> CommandResult | None:
        return None if self._server is None else self._server.result()

    def app_port(self) -> int:
        return self._app_port

    def url_for(self, port: int) -> str:
        return f"{self._url_scheme}://{self._sdk.get_host(port)}"

    def extend(self, seconds: int) -> None:
        """Keep the sandbox (and so the app) alive `seconds` from now, no longer."""
        self._check_alive()
        with _sdk_errors("extend the sandbox's lifetime"):
            self._sdk.set_timeout(int(seconds))
        self._expires = time.monotonic() + seconds

    def kill(self) -> None:
        """Kill the sandbox in E2B. Idempotent; a sandbox already gone counts as killed."""
        self._stopping = True
        if self._killed:
            return
        try:
            with _sdk_errors("stop the sandbox"):
                self._sdk.kill()  # False when E2B no longer knows it
        except SandboxError as error:
            if error.message != GONE:
                raise
        self._killed = True

    def _follow(
        self,
        handle: Any,
        timeout: float,
        emit: Callable[[str], None],
        should_stop: Callable[[], bool] | None,
    ) -> CommandResult:
        chunks: SimpleQueue[tuple[str, str]] = SimpleQueue()
        output = _Output()
        waiter = _Waiter(handle, lambda stream, chunk: chunks.put((stream, chunk)), "e2b-run")

        def pump(wait: float) -> None:
            try:
                stream, chunk = chunks.get(timeout=wait) if wait > 0 else chunks.get_nowait()
                while True:
                    for line in output.feed(stream, chunk):
                        emit(line)
                    stream, chunk = chunks.get_nowait()
            except Empty:
                pass

        started = last_check = time.monotonic()
        timed_out = cancelled = False
        try:
            while not waiter.done.is_set():
                pump(_POLL)
                now = time.monotonic()
                if now - started >= timeout:
                    timed_out = True
                elif self._stopping:
                    cancelled = True
                elif should_stop is not None and now - last_check >= _POLL:
                    last_check = now
                    cancelled = should_stop()
                if timed_out or cancelled:
                    break
        except BaseException:  # on_output or should_stop failed: leave nothing running
            waiter.stop()
            raise
        if timed_out or cancelled:
            waiter.stop()
        cancelled = cancelled or (self._stopping and not timed_out)  # kill() from elsewhere
        pump(0)
        for line in output.flush():
            emit(line)
        if not (timed_out or cancelled):
            if waiter.deadline_passed():
                timed_out = True
            elif waiter.error is not None:
                raise _translate(waiter.error, "run a command in the sandbox") from waiter.error
            elif waiter.stopped_by:
                emit(output.note(f"[sandbox] stopped: {waiter.stopped_by}"))
        if timed_out or cancelled:
            return output.result(None, timed_out=timed_out, cancelled=cancelled)
        return output.result(waiter.exit_code)

    @contextmanager
    def _internet(self, wanted: bool) -> Iterator[None]:
        """Outbound internet access for the duration of one command, when it asks for it."""
        if not wanted:
            yield
            return
        with _sdk_errors("open the sandbox's internet access"):
            self._sdk.update_network({"allow_internet_access": True})
        try:
            yield
        finally:
            try:
                with _sdk_errors("close the sandbox's internet access"):
                    self._sdk.update_network({"allow_internet_access": False})
            except SandboxError:
                # The app must not run with the internet open: give up on this sandbox.
                with suppress(SandboxError):
                    self.kill()
                raise

    def _keep_alive_for(self, seconds: float) -> None:
        """Make sure the sandbox outlives the next step by `_LIFETIME_SLACK` seconds."""
        needed = int(seconds) + _LIFETIME_SLACK
        if time.monotonic() + needed > self._expires:
            self.extend(needed)

    def _check_alive(self) -> None:
        if self._stopping:
            raise SandboxError("The sandbox was stopped.")


class E2BSandboxProvider:
    """Sandboxes in E2B's cloud, one per job.

    `url_scheme` is "https" in production; tests against a fake of the SDK use "http" (the
    SDK's own debug mode serves plain http on localhost too). `app_port` is where the app
    listens inside the sandbox; tests pick a free local port.
    """

    name = "e2b"

    def __init__(
        self,
        *,
        api_key: str,
        template: str = DEFAULT_TEMPLATE,
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
        self._api_key = api_key
        self._template = template
        self._sandbox_class: Any = sandbox_class
        self._retries = max(0, rate_limit_retries)
        self._retry_wait = retry_wait
        self._sleep = sleep
        self._url_scheme = url_scheme
        self._app_port = app_port

    def create(self, *, job_id: str, timeout: int) -> E2BSandbox:
        """A new sandbox that lives `timeout` seconds plus slack; each command extends it."""
        lifetime = int(timeout) + _LIFETIME_SLACK
        sandbox = E2BSandbox(
            self._start(job_id, lifetime),
            template=self._template,
            lifetime=lifetime,
            app_port=self._app_port,
            url_scheme=self._url_scheme,
        )
        try:
            sandbox.prepare()
        except SandboxError:
            with suppress(SandboxError):
                sandbox.kill()
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
        except _SDK_ERRORS as error:
            raise _translate(error, "stop a sandbox") from error

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
                raise SandboxError(START_TIMEOUT, detail=_short(error)) from error
            except _SDK_ERRORS as error:
                if not _retryable(error) or attempt >= self._retries:
                    raise _translate(error, "start a sandbox") from error
                attempt += 1
                log.warning(
                    "E2B refused a sandbox (%s); retry %d of %d in %.0f s",
                    _short(error),
                    attempt,
                    self._retries,
                    self._retry_wait,
                )
                self._sleep(self._retry_wait)
