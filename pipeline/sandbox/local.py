"""The offline sandbox: generated code runs as a local process, inside bubblewrap when it can.

One sandbox on the host::

    root/<sandbox_id>/
        work/   the code's working directory (mounted at /sandbox under bubblewrap)
        tmp/    TMPDIR in process-only mode (bubblewrap gives the code its own tmpfs /tmp)
        .pids   the process groups it started, so another process can kill them

`.pids` sits beside `work/`, out of the code's reach under bubblewrap, so the code
cannot plant process ids for the service to kill.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import resource
import secrets
import selectors
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from queue import SimpleQueue
from typing import Any

from pipeline.errors import SandboxError
from pipeline.sandbox.base import CommandResult

log = logging.getLogger(__name__)
_PR_SET_DUMPABLE = 4

MOUNT = "/sandbox"  # the working directory as the code sees it under bubblewrap
VENV_MOUNT = "/venv"  # the service's virtualenv, mounted away from the project directory
_PYTHON_NAMES = frozenset({"python", "python3"})
_SANDBOX_ID = re.compile(r"local-[a-z0-9]{1,8}-[0-9a-f]{8}")
_ISOLATIONS = ("auto", "bwrap", "process")
_TAIL_LINES = 200
_TAIL_CHARS = 20_000
_MAX_LINE = 64 * 1024
_POLL = 0.2
_DRAIN_GRACE = 2.0
_MB = 1024 * 1024
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class _Limits:
    memory_mb: int
    cpu_seconds: int
    file_size_mb: int

    def describe(self) -> str:
        return f"CPU {self.cpu_seconds} s, memory {self.memory_mb} MB, files {self.file_size_mb} MB"

    def preexec(self, *, death_signal: bool) -> Callable[[], None]:
        """What the child runs between fork and exec: rlimits, and optionally die with us."""
        wanted = [
            (resource.RLIMIT_CORE, 0, 0),
            # SIGXCPU at the soft limit; SIGKILL a little later if the code ignores it.
            (resource.RLIMIT_CPU, self.cpu_seconds, self.cpu_seconds + 5),
            (resource.RLIMIT_AS, self.memory_mb * _MB, self.memory_mb * _MB),
            (resource.RLIMIT_FSIZE, self.file_size_mb * _MB, self.file_size_mb * _MB),
        ]
        limits = [(which, *_within_hard(which, soft, hard)) for which, soft, hard in wanted]
        prctl = ctypes.CDLL(None, use_errno=True).prctl if death_signal else None

        def apply() -> None:
            for which, soft, hard in limits:
                resource.setrlimit(which, (soft, hard))
            if prctl is not None:
                prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

        return apply


def _within_hard(which: int, soft: int, hard: int) -> tuple[int, int]:
    """An unprivileged process cannot raise its hard limit; stay under the current one."""
    current = resource.getrlimit(which)[1]
    if current != resource.RLIM_INFINITY:
        hard = min(hard, current)
    return min(soft, hard), hard


def base_env(extra: Mapping[str, str] | None, *, path: str, home: str, tmp: str) -> dict[str, str]:
    """The code's whole environment: an allow-list plus what the caller passes (PORT, HOST...)."""
    env = {
        "PATH": f"{path}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": tmp,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONNOUSERSITE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{tmp}/matplotlib",
        # One BLAS thread: fewer per-thread buffers under RLIMIT_AS, fair CPU between jobs.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    env.update({str(key): str(value) for key, value in (extra or {}).items()})
    return env


# Only what Python, its libraries and name resolution read from /etc. Not all of /etc: the
# code's uid maps to the service's, so it could read files such as /etc/shadow that the
# service's user owns, or a config file with the service's tokens.
_ETC = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "fonts",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "matplotlibrc",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "pki/ca-trust",
    "pki/tls/certs",
    "protocols",
    "resolv.conf",
    "services",
    "ssl/certs",
    "ssl/openssl.cnf",
    "timezone",
)


@dataclass(frozen=True)
class _Bubblewrap:
    """How to run a command under bubblewrap on this host."""

    executable: str
    python: str  # the interpreter's path inside the sandbox
    python_binds: tuple[tuple[str, str], ...]  # (host, inside), read-only
    disable_userns: bool  # bwrap >= 0.8
    tmpfs_size: bool  # bwrap >= 0.7

    def argv(self, *, work: str, env: Mapping[str, str], network: bool, tmp_mb: int) -> list[str]:
        argv = [self.executable, "--die-with-parent", "--unshare-all", "--new-session"]
        # A user namespace so the code is not uid 0 (root could read /etc/shadow), no caps.
        argv += ["--unshare-user", "--uid", "65534", "--gid", "65534", "--cap-drop", "ALL"]
        if self.disable_userns:
            argv.append("--disable-userns")
        if network:
            argv.append("--share-net")
        argv += ["--ro-bind", "/usr", "/usr"]
        for name in _ETC:
            argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]  # follows symlinks
        for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(name):
                argv += ["--symlink", os.readlink(name), name]
            elif os.path.isdir(name):
                argv += ["--ro-bind", name, name]
        for host, inside in self.python_binds:
            argv += ["--ro-bind", host, inside]
        argv += ["--bind", work, MOUNT, "--chdir", MOUNT, "--proc", "/proc", "--dev", "/dev"]
        if self.tmpfs_size:
            argv += ["--size", str(tmp_mb * _MB)]
        argv += ["--tmpfs", "/tmp", "--clearenv"]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        return [*argv, "--"]


def _under_usr(path: str) -> bool:
    return path == "/usr" or path.startswith("/usr/")


def _python_layout() -> tuple[str, tuple[tuple[str, str], ...]]:
    """Mount only the virtualenv and the base interpreter, never the project directory."""
    executable = os.path.abspath(sys.executable)
    binds: list[tuple[str, str]] = []
    if not _under_usr(sys.base_prefix):
        binds.append((sys.base_prefix, sys.base_prefix))  # the venv's python links into it
    if sys.prefix == sys.base_prefix:
        return executable, tuple(binds)
    venv = os.path.abspath(sys.prefix)
    binds.append((venv, VENV_MOUNT))
    if executable.startswith(venv + os.sep):
        executable = VENV_MOUNT + executable[len(venv) :]
    return executable, tuple(binds)


@cache
def _hide_own_environment() -> None:
    """Without bubblewrap, code runs as this service's user and could read the service's
    environment (its tokens) from /proc/<service pid>/environ. A non-dumpable process's
    /proc entries belong to root, which closes that door unless the service runs as root."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to close
        log.warning("could not mark the service non-dumpable")


def _probe_bubblewrap(executable: str) -> tuple[_Bubblewrap | None, str]:
    """bubblewrap as this host allows it, or None and why not. Probed once per process."""
    try:
        helptext = subprocess.run(
            [executable, "--help"], capture_output=True, text=True, timeout=10
        ).stdout
        python, binds = _python_layout()
        bwrap = _Bubblewrap(
            executable=executable,
            python=python,
            python_binds=binds,
            disable_userns="--disable-userns" in helptext,
            tmpfs_size="--size" in helptext,
        )
        with tempfile.TemporaryDirectory() as work:
            env = base_env(None, path=os.path.dirname(python), home=MOUNT, tmp="/tmp")
            argv = bwrap.argv(work=work, env=env, network=False, tmp_mb=16)
            probe = subprocess.run(
                [*argv, python, "-c", "import encodings"], capture_output=True, timeout=30
            )
    except (OSError, subprocess.SubprocessError) as error:
        return None, str(error)
    if probe.returncode != 0:
        return None, probe.stderr.decode("utf-8", "replace").strip()[-2000:]
    return bwrap, ""


# Linux sends a child its parent-death signal when the *thread* that forked it exits,
# so a server started from a short-lived worker thread would die with that thread.
# Every child is therefore forked by one long-lived thread.
_spawn_lock = threading.Lock()
_spawn_queue: SimpleQueue[tuple[list[str], dict[str, Any], Future[subprocess.Popen[bytes]]]] | None
_spawn_queue = None


def _spawn_forever(queue: SimpleQueue[Any]) -> None:
    while True:
        argv, kwargs, future = queue.get()
        try:
            future.set_result(subprocess.Popen(argv, **kwargs))
        except BaseException as error:  # handed to the caller
            future.set_exception(error)


def _popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    global _spawn_queue
    with _spawn_lock:
        if _spawn_queue is None:
            _spawn_queue = SimpleQueue()
            threading.Thread(
                target=_spawn_forever, args=(_spawn_queue,), name="sandbox-spawner", daemon=True
            ).start()
        queue = _spawn_queue
    future: Future[subprocess.Popen[bytes]] = Future()
    queue.put((argv, kwargs, future))
    return future.result()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks: with the pid, it names one process for good."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19]


def _killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _Proc:
    """One started process group: its output, a bounded tail of each stream, its exit."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pgid = popen.pid  # start_new_session: the child leads its own group
        self.start_time = _start_time(popen.pid) or "-"
        self.tails: dict[str, deque[str]] = {
            "stdout": deque(maxlen=_TAIL_LINES),
            "stderr": deque(maxlen=_TAIL_LINES),
        }
        self._partial = {"stdout": b"", "stderr": b""}
        self._lock = threading.Lock()
        self._reaped = False
        self._finished = False
        self._selector = selectors.DefaultSelector()
        for name, pipe in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
            self._selector.register(pipe.fileno(), selectors.EVENT_READ, name)

    @property
    def drained(self) -> bool:
        return not self._selector.get_map()

    def read(self, timeout: float) -> list[str]:
        """Lines that arrived within `timeout`, in arrival order."""
        if self.drained:
            time.sleep(timeout)
            return []
        lines: list[str] = []
        for key, _ in self._selector.select(timeout):
            name = key.data
            try:
                chunk = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                self._selector.unregister(key.fd)
                chunk = b"\n" if self._partial[name] else b""
            *complete, rest = (self._partial[name] + chunk).split(b"\n")
            while len(rest) > _MAX_LINE:
                complete.append(rest[:_MAX_LINE])
                rest = rest[_MAX_LINE:]
            self._partial[name] = rest
            for raw in complete:
                line = raw.decode("utf-8", "replace").rstrip("\r")
                self.tails[name].append(line)
                lines.append(line)
        return lines

    def exited(self) -> bool:
        """Whether the leader exited. Unreaped until `finish`, so its group id stays ours."""
        with self._lock:
            if self._reaped:
                return True
            try:
                flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
                return os.waitid(os.P_PID, self.pgid, flags) is not None
            except ChildProcessError:
                return True

    def kill(self) -> None:
        with self._lock:
            if not self._reaped:
                _killpg(self.pgid)

    def finish(self, on_line: Callable[[str], None] | None = None) -> int:
        """Kill what is left of the group, drain the pipes, reap the leader: its exit code."""
        if self._finished:
            return self.popen.wait()
        self.kill()
        deadline = time.monotonic() + _DRAIN_GRACE
        while not self.drained and time.monotonic() < deadline:
            for line in self.read(0.05):
                if on_line is not None:
                    on_line(line)
        with self._lock:
            code = self.popen.wait()
            self._reaped = True
        self._finished = True
        self._selector.close()
        for pipe in (self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                pipe.close()
        return code

    def tail(self, name: str) -> str:
        return "\n".join(self.tails[name])[-_TAIL_CHARS:]


class _Groups:
    """The live process groups of one sandbox, mirrored in its `.pids` file."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file
        self.closed = False
        self._procs: dict[int, _Proc] = {}
        self._lock = threading.Lock()

    def add(self, proc: _Proc) -> None:
        with self._lock:
            if not self.closed:
                self._procs[proc.pgid] = proc
                self._write()
                return
        proc.kill()
        proc.finish()
        raise SandboxError("The sandbox was stopped.")

    def remove(self, proc: _Proc) -> None:
        with self._lock:
            if self._procs.pop(proc.pgid, None) is not None and not self.closed:
                self._write()

    def close(self) -> None:
        with self._lock:
            self.closed = True
            procs = list(self._procs.values())
        for proc in procs:
            proc.kill()

    def _write(self) -> None:
        text = "".join(f"{proc.pgid} {proc.start_time}\n" for proc in self._procs.values())
        partial = self.pid_file.with_name(".pids.new")
        with contextlib.suppress(FileNotFoundError):  # removed by another process's kill
            partial.write_text(text)
            os.replace(partial, self.pid_file)


def _kill_recorded(pid_file: Path) -> None:
    """Kill the groups a `.pids` file names, if they are still the processes it recorded."""
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        pgid, _, start_time = line.partition(" ")
        if pgid.isdigit() and int(pgid) > 1 and _start_time(int(pgid)) == start_time:
            _killpg(int(pgid))


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


def _destroy(groups: _Groups, directory: Path) -> None:
    groups.close()
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


class _Server:
    """A background process whose output is drained by a thread until it exits."""

    def __init__(self, proc: _Proc, groups: _Groups) -> None:
        self.proc = proc
        self.result: CommandResult | None = None
        self._groups = groups
        self._thread = threading.Thread(target=self._pump, name="sandbox-server", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        code: int | None = None
        try:
            while not self.proc.exited():
                self.proc.read(_POLL)
            code = self.proc.finish()
        finally:
            self._groups.remove(self.proc)
            stdout, stderr = self.proc.tail("stdout"), self.proc.tail("stderr")
            self.result = CommandResult(exit_code=code, stdout=stdout, stderr=stderr)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class LocalSandbox:
    """A sandbox on this machine. Made by `LocalSandboxProvider.create`."""

    def __init__(
        self,
        sandbox_id: str,
        directory: Path,
        *,
        limits: _Limits,
        bubblewrap: _Bubblewrap | None,
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
        self._groups = _Groups(directory / ".pids")
        self._server: _Server | None = None
        self._finalizer = weakref.finalize(self, _destroy, self._groups, directory)

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
                for line in proc.read(_POLL):
                    emit(line)
                now = time.monotonic()
                if now - started >= timeout:
                    timed_out = True
                    break
                if self._groups.closed:
                    cancelled = True
                    break
                if should_stop is not None and now - last_check >= _POLL:
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
        """Start a long-running process with network access; PORT defaults to `port`."""
        if self._server is not None and self._server.result is None:
            raise SandboxError("A server is already running in this sandbox.")
        proc = self._spawn(command, {"PORT": str(port), **(env or {})}, network=True)
        self._server = _Server(proc, self._groups)

    def server_exited(self) -> CommandResult | None:
        return None if self._server is None else self._server.result

    def app_port(self) -> int:
        """A TCP port free on the host; under bubblewrap the server shares the host network."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("", 0))
            return int(probe.getsockname()[1])

    def url_for(self, port: int) -> str:
        return f"http://{self._public_host}:{port}"

    def extend(self, seconds: int) -> None:
        self.deadline = time.time() + seconds

    def kill(self) -> None:
        """Kill every process this sandbox started and remove its directory. Idempotent."""
        self._finalizer()
        if self._server is not None:
            self._server.join(timeout=_DRAIN_GRACE + 1)

    def _spawn(self, command: list[str], env: Mapping[str, str] | None, *, network: bool) -> _Proc:
        if not command:
            raise SandboxError("No command to run.")
        self._check_alive()
        argv = list(command)
        bwrap = self._bubblewrap
        python = bwrap.python if bwrap is not None else sys.executable
        if argv[0] in _PYTHON_NAMES:
            argv[0] = python
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
            popen = _popen(
                argv,
                cwd=self.workdir,
                env=process_env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
                start_new_session=True,
                preexec_fn=self._limits.preexec(death_signal=bwrap is None),
            )
        except OSError as error:
            raise SandboxError(f"Could not start {command[0]!r}: {error.strerror}.") from error
        proc = _Proc(popen)
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
        self._limits = _Limits(memory_mb, cpu_seconds, file_size_mb)
        self._public_host = public_host
        self._live: weakref.WeakValueDictionary[str, LocalSandbox] = weakref.WeakValueDictionary()
        self.bubblewrap, self.isolation = self._choose(isolation)

    @property
    def mode(self) -> str:
        return "process" if self.bubblewrap is None else "bwrap"

    def _choose(self, isolation: str) -> tuple[_Bubblewrap | None, str]:
        limits = self._limits.describe()
        if isolation == "process":
            _hide_own_environment()
            return None, self._process_only("bubblewrap disabled", limits)
        executable = shutil.which("bwrap")
        bwrap, why = _probe_bubblewrap(executable) if executable else (None, "bwrap not on PATH")
        if bwrap is not None:
            return bwrap, f"bubblewrap: private filesystem, no network for training, {limits}"
        if isolation == "bwrap":
            raise SandboxError("bubblewrap is required but does not work here.", detail=why)
        log.warning("bubblewrap unavailable, sandboxes get process limits only: %s", why)
        _hide_own_environment()
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
        _kill_recorded(directory / ".pids")
        _remove_tree(directory)
        return True
