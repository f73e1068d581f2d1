"""Supervising the code's processes: limits, environment, process groups, output, exit.

Every process a sandbox starts leads its own process group, recorded in the sandbox's
`.pids` file so that another process of the service can kill it too.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from pipeline.errors import SandboxError
from pipeline.limits import OUTPUT_MAX_LINE, OUTPUT_TAIL_CHARS, OUTPUT_TAIL_LINES
from pipeline.sandbox.base import CommandResult

log = logging.getLogger(__name__)

POLL = 0.2  # seconds between looks at a running process
DRAIN_GRACE = 2.0  # seconds a killed process's pipes get to drain
_MB = 1024 * 1024
_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4


@dataclass(frozen=True)
class Limits:
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


@cache
def hide_own_environment() -> None:
    """Without bubblewrap, code runs as this service's user and could read the service's
    environment (its tokens) from /proc/<service pid>/environ. A non-dumpable process's
    /proc entries belong to root, which closes that door unless the service runs as root."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to close
        log.warning("could not mark the service non-dumpable")


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


def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
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


class Proc:
    """One started process group: its output, a bounded tail of each stream, its exit."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pgid = popen.pid  # start_new_session: the child leads its own group
        self.start_time = _start_time(popen.pid) or "-"
        self.tails: dict[str, deque[str]] = {
            "stdout": deque(maxlen=OUTPUT_TAIL_LINES),
            "stderr": deque(maxlen=OUTPUT_TAIL_LINES),
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
            while len(rest) > OUTPUT_MAX_LINE:
                complete.append(rest[:OUTPUT_MAX_LINE])
                rest = rest[OUTPUT_MAX_LINE:]
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
        deadline = time.monotonic() + DRAIN_GRACE
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
        return "\n".join(self.tails[name])[-OUTPUT_TAIL_CHARS:]


class Groups:
    """The live process groups of one sandbox, mirrored in its `.pids` file."""

    def __init__(self, pid_file: Path) -> None:
        self.pid_file = pid_file
        self.closed = False
        self._procs: dict[int, Proc] = {}
        self._lock = threading.Lock()

    def add(self, proc: Proc) -> None:
        with self._lock:
            if not self.closed:
                self._procs[proc.pgid] = proc
                self._write()
                return
        proc.kill()
        proc.finish()
        raise SandboxError("The sandbox was stopped.")

    def remove(self, proc: Proc) -> None:
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


def kill_recorded(pid_file: Path) -> None:
    """Kill the groups a `.pids` file names, if they are still the processes it recorded."""
    try:
        lines = pid_file.read_text().splitlines()
    except OSError:
        return
    for line in lines:
        pgid, _, start_time = line.partition(" ")
        if pgid.isdigit() and int(pgid) > 1 and _start_time(int(pgid)) == start_time:
            _killpg(int(pgid))


class Server:
    """A background process whose output is drained by a thread until it exits.

    `on_exit` runs once it has exited (the sandbox closes the app's forwarded port then).
    """

    def __init__(
        self, proc: Proc, groups: Groups, *, on_exit: Callable[[], None] | None = None
    ) -> None:
        self.proc = proc
        self.result: CommandResult | None = None
        self._groups = groups
        self._on_exit = on_exit
        self._thread = threading.Thread(target=self._pump, name="sandbox-server", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        code: int | None = None
        try:
            while not self.proc.exited():
                self.proc.read(POLL)
            code = self.proc.finish()
        finally:
            self._groups.remove(self.proc)
            if self._on_exit is not None:
                self._on_exit()
            stdout, stderr = self.proc.tail("stdout"), self.proc.tail("stderr")
            self.result = CommandResult(exit_code=code, stdout=stdout, stderr=stderr)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
