"""The offline sandbox: generated code runs as a local process, inside bubblewrap when it can.

One sandbox on the host::

    root/<sandbox_id>/
        work/   the code's working directory (mounted at /sandbox under bubblewrap)
        tmp/    TMPDIR in process-only mode (bubblewrap gives the code its own tmpfs /tmp)
        .pids   the process groups it started, so another process can kill them

`.pids` sits beside `work/`, out of the code's reach under bubblewrap, so the code
cannot plant process ids for the service to kill.

Under bubblewrap the live app runs in its own network namespace and is reached through
its port forwarded from the host (forwarding.py): it can answer, but dial nothing. The
command line lives in bubblewrap.py, the process supervision in processes.py.

A live app lives in the process that created its sandbox (that process relays its port, and
its processes die with it): `survives_worker` is False. Its end is the job row's `expires_at`,
which any worker's sweep acts on; nothing in the sandbox itself stops it early, so extending it
(by object or by id from another process) is only the arithmetic the row records.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

from pipeline.errors import SandboxError
from pipeline.sandbox.base import CommandResult, SandboxGone
from pipeline.sandbox.bubblewrap import MOUNT, Bubblewrap, probe_bubblewrap
from pipeline.sandbox.forwarding import PortForward, relay_command
from pipeline.sandbox.processes import (
    DRAIN_GRACE,
    POLL,
    Groups,
    Limits,
    Proc,
    Server,
    base_env,
    hide_own_environment,
    kill_recorded,
    popen,
)

log = logging.getLogger(__name__)

_PYTHON_NAMES = frozenset({"python", "python3"})
_SANDBOX_ID = re.compile(r"local-[a-z0-9]{1,8}-[0-9a-f]{8}")
_ISOLATIONS = ("auto", "bwrap", "process")
APP_GONE = "the app is gone: its local sandbox was stopped or its worker exited"


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (what a container's cpuset
    leaves it) where the platform tells, else every core of the machine; at least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _ends_after(seconds: int) -> datetime:
    """When a local sandbox asked to live `seconds` more stops: exactly then (no cap)."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _remove_tree(directory: Path) -> None:
    """Remove a sandbox directory, even where the code took away its own write permission."""

    def loosen(_function: object, path: str, _error: object) -> None:
        for target in (path, os.path.dirname(path)):
            with contextlib.suppress(OSError):
                if stat.S_ISDIR(os.lstat(target).st_mode):
                    os.chmod(target, 0o700)

    handler = {"onexc": loosen} if sys.version_info >= (3, 12) else {"onerror": loosen}
    for _ in range(8):  # each pass unlocks one more level
        shutil.rmtree(directory, **handler)  # type: ignore[arg-type]
        if not os.path.lexists(directory):
            return


class _Forwards:
    """The host ports forwarded into one sandbox: bound by `app_port`, used by `start_server`."""

    def __init__(self, host: str = "") -> None:
        self._host = host  # every interface, as the app itself listened before it had a namespace
        self._by_port: dict[int, PortForward] = {}
        self._lock = threading.Lock()
        self._closed = False

    def reserve(self) -> int:
        return self._keep(PortForward(self._host)).port

    def take(self, port: int) -> PortForward:
        with self._lock:
            forward = self._by_port.get(port)
        if forward is not None:
            return forward
        try:
            return self._keep(PortForward(self._host, port))
        except OSError as error:
            raise SandboxError(f"Port {port} cannot be used: {error.strerror}.") from error

    def release(self, port: int) -> None:
        with self._lock:
            forward = self._by_port.pop(port, None)
        if forward is not None:
            forward.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            forwards, self._by_port = list(self._by_port.values()), {}
        for forward in forwards:
            forward.close()

    def _keep(self, forward: PortForward) -> PortForward:
        with self._lock:
            if not self._closed:
                self._by_port[forward.port] = forward
                return forward
        forward.close()
        raise SandboxError("The sandbox was stopped.")


def _destroy(groups: Groups, forwards: _Forwards, directory: Path) -> None:
    groups.close()
    forwards.close()
    _remove_tree(directory)


def _relative_parts(path: str) -> list[str]:
    pure = PurePosixPath(path)
    parts = [part for part in pure.parts if part != "."]
    if not path or "\x00" in path or pure.is_absolute() or not parts or ".." in parts:
        raise SandboxError(f"The path {path!r} is not a relative path inside the sandbox.")
    return parts


def _open_at(path: str, name: str, flags: int, dir_fd: int) -> int:
    try:
        return os.open(name, flags, 0o644, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as error:  # ELOOP for a symlink, ENOTDIR, ...
        raise SandboxError(f"Cannot open {path!r} in the sandbox: {error.strerror}.") from error


def _open_inside(root: Path, path: str, flags: int, *, make_dirs: bool = False) -> int:
    """Open `path` under `root` without following any symlink the code may have planted."""
    parts = _relative_parts(path)
    nofollow = os.O_NOFOLLOW | os.O_CLOEXEC
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | nofollow)
    try:
        for part in parts[:-1]:
            if make_dirs:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=dir_fd)
            next_fd = _open_at(path, part, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        # O_NONBLOCK: a FIFO planted by the code must not hang the service.
        fd = _open_at(path, parts[-1], flags | nofollow | os.O_NONBLOCK, dir_fd)
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise SandboxError(f"{path!r} in the sandbox is not a regular file.")
    os.set_blocking(fd, True)
    return fd


class LocalSandbox:
    """A sandbox on this machine. Made by `LocalSandboxProvider.create`."""

    def __init__(
        self,
        sandbox_id: str,
        directory: Path,
        *,
        limits: Limits,
        bubblewrap: Bubblewrap | None,
        isolation: str,
        public_host: str,
        timeout: int,
    ) -> None:
        self.id = sandbox_id
        self.isolation = isolation
        self.directory = directory
        self.workdir = directory / "work"
        self.deadline = time.time() + timeout  # local apps are stopped by the runner's TTL
        self._limits = limits
        self._bubblewrap = bubblewrap
        self._public_host = public_host
        self._groups = Groups(directory / ".pids")
        self._forwards = _Forwards()
        self._server: Server | None = None
        self._finalizer = weakref.finalize(self, _destroy, self._groups, self._forwards, directory)

    def write_file(self, path: str, data: bytes | str) -> None:
        """Write `path` relative to the working directory, creating folders as needed."""
        self._check_alive()
        payload = data.encode("utf-8") if isinstance(data, str) else data
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with os.fdopen(_open_inside(self.workdir, path, flags, make_dirs=True), "wb") as file:
            file.write(payload)

    def read_file(self, path: str) -> bytes:
        """Read `path` relative to the working directory. FileNotFoundError if it is missing."""
        self._check_alive()
        with os.fdopen(_open_inside(self.workdir, path, os.O_RDONLY), "rb") as file:
            return file.read()

    def write_file_from(self, path: str, source: Path) -> None:
        """Copy the local file `source` to `path`, a chunk at a time."""
        self._check_alive()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with source.open("rb") as data:
            with os.fdopen(_open_inside(self.workdir, path, flags, make_dirs=True), "wb") as file:
                shutil.copyfileobj(data, file)

    def read_file_to(self, path: str, target: Path) -> None:
        """Copy `path` to the local file `target`. FileNotFoundError if it is missing."""
        self._check_alive()
        with os.fdopen(_open_inside(self.workdir, path, os.O_RDONLY), "rb") as file:
            with target.open("wb") as out:
                shutil.copyfileobj(file, out)

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

        `on_output` is called on this thread. Processes the command leaves behind are killed.
        """
        emit = on_output or (lambda _line: None)
        proc = self._spawn(command, env, network=network)
        started = last_check = time.monotonic()
        timed_out = cancelled = False
        try:
            while not proc.exited():
                for line in proc.read(POLL):
                    emit(line)
                now = time.monotonic()
                if now - started >= timeout:
                    timed_out = True
                    break
                if self._groups.closed:
                    cancelled = True
                    break
                if should_stop is not None and now - last_check >= POLL:
                    last_check = now
                    if should_stop():
                        cancelled = True
                        break
            cancelled = cancelled or self._groups.closed  # kill() from another thread
            code = proc.finish(emit)
        except BaseException:
            proc.finish()
            raise
        finally:
            self._groups.remove(proc)
        for note in self._limit_notes(code, stopped=timed_out or cancelled):
            proc.tails["stderr"].append(note)
            emit(note)
        return CommandResult(
            exit_code=None if timed_out or cancelled else code,
            stdout=proc.tail("stdout"),
            stderr=proc.tail("stderr"),
            timed_out=timed_out,
            cancelled=cancelled,
        )

    def start_server(
        self, command: list[str], *, port: int, env: Mapping[str, str] | None = None
    ) -> None:
        """Start a long-running process that serves on `port`; PORT defaults to `port`.

        Under bubblewrap it has no network but its own loopback, and the host's `port` is
        forwarded to the same port inside. Otherwise it shares the host's network.
        """
        if self._server is not None and self._server.result is None:
            raise SandboxError("A server is already running in this sandbox.")
        env = {"PORT": str(port), **(env or {})}
        if self._bubblewrap is None:
            self._server = Server(self._spawn(command, env, network=True), self._groups)
            return
        forward = self._forwards.take(port)
        control_fd = forward.inside.fileno()
        relayed = relay_command(
            self._bubblewrap.python,
            control_fd=control_fd,
            port=port,
            command=self._with_python(command),
        )
        try:
            proc = self._spawn(relayed, env, network=False, pass_fds=(control_fd,))
        except BaseException:
            self._forwards.release(port)
            raise
        forward.start()
        # Not a bound method: the server's thread must not keep the sandbox from being collected.
        release = functools.partial(self._forwards.release, port)
        self._server = Server(proc, self._groups, on_exit=release)

    def server_exited(self) -> CommandResult | None:
        return None if self._server is None else self._server.result

    def app_port(self) -> int:
        """A port for the app, free on the host.

        Under bubblewrap the host's side is bound now and held for `start_server`, so nothing
        else can take it meanwhile; otherwise the app binds it itself, on the host's network.
        """
        if self._bubblewrap is not None:
            return self._forwards.reserve()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("", 0))
            return int(probe.getsockname()[1])

    def url_for(self, port: int) -> str:
        return f"http://{self._public_host}:{port}"

    def extend(self, seconds: int) -> datetime:
        """Nothing stops a local sandbox early: it lives exactly as long as asked."""
        self.deadline = time.time() + seconds
        return _ends_after(seconds)

    def kill(self) -> None:
        """Kill every process this sandbox started and remove its directory. Idempotent."""
        self._finalizer()
        if self._server is not None:
            self._server.join(timeout=DRAIN_GRACE + 1)

    def _with_python(self, command: list[str]) -> list[str]:
        """`command` with "python" replaced by the interpreter the code must use."""
        if not command:
            raise SandboxError("No command to run.")
        python = self._bubblewrap.python if self._bubblewrap is not None else sys.executable
        return [python, *command[1:]] if command[0] in _PYTHON_NAMES else list(command)

    def _spawn(
        self,
        command: list[str],
        env: Mapping[str, str] | None,
        *,
        network: bool,
        pass_fds: tuple[int, ...] = (),
    ) -> Proc:
        argv = self._with_python(command)
        self._check_alive()
        bwrap = self._bubblewrap
        python = bwrap.python if bwrap is not None else sys.executable
        if bwrap is not None:
            code_env = base_env(env, path=os.path.dirname(python), home=MOUNT, tmp="/tmp")
            tmp_mb = self._limits.file_size_mb
            argv = [
                *bwrap.argv(work=str(self.workdir), env=code_env, network=network, tmp_mb=tmp_mb),
                *argv,
            ]
            process_env: dict[str, str] = {}
        else:
            tmp = str(self.directory / "tmp")
            process_env = base_env(
                env, path=os.path.dirname(python), home=str(self.workdir), tmp=tmp
            )
        try:
            process = popen(
                argv,
                cwd=self.workdir,
                env=process_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,
                pass_fds=pass_fds,
                preexec_fn=self._limits.preexec(death_signal=bwrap is None),
            )
        except OSError as error:
            raise SandboxError(f"Could not start {command[0]!r}: {error.strerror}.") from error
        proc = Proc(process)
        self._groups.add(proc)
        return proc

    @property
    def alive(self) -> bool:
        return not self._groups.closed

    def _check_alive(self) -> None:
        if self._groups.closed:
            raise SandboxError("The sandbox was stopped.")

    def _limit_notes(self, code: int, *, stopped: bool) -> Iterable[str]:
        """Say why a process died of a limit; otherwise a CPU kill shows no message at all."""
        offset = 128 if self._bubblewrap is not None else 0  # bwrap exits 128 + signal
        sign = 1 if self._bubblewrap is not None else -1
        if not stopped and code == sign * (offset + signal.SIGXCPU):
            yield f"[sandbox] stopped: CPU time limit of {self._limits.cpu_seconds} s reached"
        if not stopped and code == sign * (offset + signal.SIGXFSZ):
            yield f"[sandbox] stopped: file size limit of {self._limits.file_size_mb} MB reached"


class LocalSandboxProvider:
    """Sandboxes in directories under `root`, isolated by bubblewrap when available.

    isolation: "auto" (bubblewrap if it works here, else process limits), "bwrap" (required),
    or "process" (rlimits, scrubbed environment and an own directory only).
    """

    name = "local"
    max_lifetime: int | None = None  # nothing caps a local sandbox's life
    survives_worker = False  # the worker relays the app's port; its processes die with it
    concurrent_limit: int | None = None  # the machine's memory is the limit

    def __init__(
        self,
        root: Path,
        *,
        memory_mb: int,
        cpu_seconds: int,
        file_size_mb: int,
        public_host: str = "127.0.0.1",
        isolation: str = "auto",
    ) -> None:
        if isolation not in _ISOLATIONS:
            raise ValueError(f"isolation must be one of {_ISOLATIONS}, not {isolation!r}")
        self._root = Path(root).absolute()
        self._limits = Limits(memory_mb, cpu_seconds, file_size_mb)
        self._public_host = public_host
        self._live: weakref.WeakValueDictionary[str, LocalSandbox] = weakref.WeakValueDictionary()
        self.bubblewrap, self.isolation = self._choose(isolation)
        # The probe has shown that the app's namespace is empty and its port can be forwarded.
        self.isolates_network = self.bubblewrap is not None
        # Training runs on this machine: a job a core (each job's code gets one BLAS thread).
        self.concurrent_jobs = usable_cores()

    @property
    def mode(self) -> str:
        return "process" if self.bubblewrap is None else "bwrap"

    def _choose(self, isolation: str) -> tuple[Bubblewrap | None, str]:
        limits = self._limits.describe()
        if isolation == "process":
            hide_own_environment()
            return None, self._process_only("bubblewrap disabled", limits)
        executable = shutil.which("bwrap")
        bwrap, why = probe_bubblewrap(executable) if executable else (None, "bwrap not on PATH")
        if bwrap is not None:
            return bwrap, (
                "bubblewrap: private filesystem, no network for training, app reached only "
                f"through its forwarded port (it can dial nothing), {limits}"
            )
        if isolation == "bwrap":
            raise SandboxError("bubblewrap is required but does not work here.", detail=why)
        log.warning("bubblewrap unavailable, sandboxes get process limits only: %s", why)
        hide_own_environment()
        return None, self._process_only("bubblewrap not available", limits)

    @staticmethod
    def _process_only(reason: str, limits: str) -> str:
        return (
            f"process limits only ({reason}): scrubbed environment, own working directory, "
            f"host filesystem visible, network open, {limits}"
        )

    def create(self, *, job_id: str, timeout: int) -> LocalSandbox:
        prefix = re.sub(r"[^a-z0-9]", "", job_id.lower())[:8] or "job"
        sandbox_id = f"local-{prefix}-{secrets.token_hex(4)}"
        directory = self._root / sandbox_id
        self._root.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
        (directory / "work").mkdir()
        (directory / "tmp").mkdir()
        sandbox = LocalSandbox(
            sandbox_id,
            directory,
            limits=self._limits,
            bubblewrap=self.bubblewrap,
            isolation=self.isolation,
            public_host=self._public_host,
            timeout=timeout,
        )
        self._live[sandbox_id] = sandbox
        return sandbox

    def kill(self, sandbox_id: str) -> bool:
        """Kill a sandbox by id, also one started by another process. True if it was found."""
        if not _SANDBOX_ID.fullmatch(sandbox_id):
            return False
        live = self._live.get(sandbox_id)
        if live is not None and live.alive:
            live.kill()
            return True
        directory = self._root / sandbox_id
        if not directory.is_dir():
            return False
        kill_recorded(directory / ".pids")
        _remove_tree(directory)
        return True

    def extend(self, sandbox_id: str, seconds: int) -> datetime:
        """More life for a sandbox, also one started by another worker; when it will stop.

        The job row's expiry, which any worker's sweep acts on, is what stops a local app, so
        this only checks that the sandbox is still there. SandboxGone if it is not.
        """
        if not _SANDBOX_ID.fullmatch(sandbox_id):  # checked before it names a path
            raise SandboxGone(APP_GONE, detail=f"{sandbox_id!r} is not a local sandbox id")
        live = self._live.get(sandbox_id)  # made here: its own deadline moves too
        # The directory as well: another process may have killed it by id.
        if (live is not None and not live.alive) or not (self._root / sandbox_id).is_dir():
            raise SandboxGone(APP_GONE, detail=f"no sandbox directory {sandbox_id}")
        return live.extend(seconds) if live is not None else _ends_after(seconds)
