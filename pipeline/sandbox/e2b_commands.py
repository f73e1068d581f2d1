"""Commands in an E2B sandbox: how they are started, followed and stopped.

The SDK runs a command string under `bash -l -c` (e2b/sandbox_sync/commands/command.py). envd
starts it in envd's own process group and its kill (SIGKILL) reaches only that one process
(github.com/e2b-dev/infra, packages/envd/internal/services/process/handler/handler.go: no
`Setpgid` in `New`; `SendSignal` signals `cmd.Process`). What a command spawns (a joblib worker,
a pip build) would outlive a timeout or a cancel. So every command runs as the leader of a
process group of its own (`setsid`: envd's child is never a group leader, so `setsid` needs no
fork and the group's id is the command's pid), and stopping a command kills that group.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from queue import Empty, SimpleQueue
from typing import Any

from e2b_code_interpreter import (
    CommandExitException,
    SandboxNotRunningException,
    SandboxUnreachableException,
    TimeoutException,
)

from pipeline.errors import SandboxError
from pipeline.limits import OUTPUT_MAX_LINE, OUTPUT_TAIL_CHARS, OUTPUT_TAIL_LINES
from pipeline.sandbox.base import CommandResult
from pipeline.sandbox.e2b_errors import GONE, SDK_ERRORS, translate

_PYTHON_NAMES = frozenset({"python", "python3"})
DRAIN_GRACE = 5.0
_POLL = 0.2


def shell_command(command: list[str]) -> str:
    """The command as the process E2B starts (`exec`), leading a process group of its own.

    `--wait` keeps the exit status should `setsid` ever have to fork.
    """
    if not command:
        raise SandboxError("No command to run.")
    argv = ["python3" if command[0] in _PYTHON_NAMES else command[0], *command[1:]]
    return "exec setsid -w " + shlex.join(argv)


def kill_group_command(pid: int) -> str:
    """Kill the process group led by `pid`: the command and all it spawned."""
    return f"kill -KILL -- -{int(pid)}"


class Output:
    """A command's output chunks cut into lines, keeping the last lines of each stream."""

    def __init__(self) -> None:
        self._partial = {"stdout": "", "stderr": ""}
        self._tails: dict[str, deque[str]] = {
            name: deque(maxlen=OUTPUT_TAIL_LINES) for name in self._partial
        }

    def feed(self, stream: str, chunk: str) -> list[str]:
        *lines, rest = (self._partial[stream] + chunk).split("\n")
        if len(rest) > OUTPUT_MAX_LINE:
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
        return "\n".join(self._tails[stream])[-OUTPUT_TAIL_CHARS:]

    def result(self, exit_code: int | None, **flags: bool) -> CommandResult:
        return CommandResult(
            exit_code=exit_code, stdout=self.tail("stdout"), stderr=self.tail("stderr"), **flags
        )

    def _keep(self, stream: str, lines: list[str]) -> list[str]:
        self._tails[stream].extend(lines)
        return lines


class Waiter:
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
        """Kill the command (SIGKILL) and give its last output a moment to arrive.

        envd stops reading the output once it signals a command, so this ends the wait even
        while something outside the group still holds the command's pipes.
        """
        with suppress(*SDK_ERRORS):
            self.handle.kill()
        self.done.wait(DRAIN_GRACE)

    def deadline_passed(self) -> bool:
        """The SDK's own stream deadline ended the wait (not the sandbox going away)."""
        gone = SandboxNotRunningException | SandboxUnreachableException
        return isinstance(self.error, TimeoutException) and not isinstance(self.error, gone)


class Server:
    """The app running in the background, its output kept until it exits."""

    def __init__(self, handle: Any) -> None:
        self._output = Output()
        self._waiter = Waiter(handle, self._output.feed, name="e2b-server")
        self._result: CommandResult | None = None

    def result(self) -> CommandResult | None:
        """How the app ended; None while it runs, or when only our view of it was lost."""
        if self._result is None and self._waiter.done.is_set():
            error = self._waiter.error
            if error is not None and translate(error, "follow the app").message != GONE:
                return None  # a dropped stream: the app may well be serving still
            self._output.flush()
            if error is not None:
                self._output.note(f"[sandbox] {GONE}")
            elif self._waiter.stopped_by:
                self._output.note(f"[sandbox] stopped: {self._waiter.stopped_by}")
            self._result = self._output.result(self._waiter.exit_code)
        return self._result


def follow(
    handle: Any,
    *,
    timeout: float,
    emit: Callable[[str], None],
    should_stop: Callable[[], bool] | None,
    stopping: Callable[[], bool],
    stop: Callable[[Waiter], None],
) -> CommandResult:
    """Follow a started command to its end, a timeout or a stop, emitting its output lines.

    `stopping` tells that the sandbox is being killed (the command ends as cancelled); `stop`
    kills the command and everything it spawned.
    """
    chunks: SimpleQueue[tuple[str, str]] = SimpleQueue()
    output = Output()
    waiter = Waiter(handle, lambda stream, chunk: chunks.put((stream, chunk)), "e2b-run")

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
            elif stopping():
                cancelled = True
            elif should_stop is not None and now - last_check >= _POLL:
                last_check = now
                cancelled = should_stop()
            if timed_out or cancelled:
                break
    except BaseException:  # on_output or should_stop failed: leave nothing running
        stop(waiter)
        raise
    if timed_out or cancelled:
        stop(waiter)
    cancelled = cancelled or (stopping() and not timed_out)  # kill() from elsewhere
    pump(0)
    for line in output.flush():
        emit(line)
    if not (timed_out or cancelled):
        if waiter.deadline_passed():  # envd killed the command, but not what it spawned
            stop(waiter)
            timed_out = True
        elif waiter.error is not None:
            error = translate(waiter.error, "run a command in the sandbox")
            if error.message != GONE:  # only our view of it was lost: it may run on
                stop(waiter)
            raise error from waiter.error
        elif waiter.stopped_by:
            emit(output.note(f"[sandbox] stopped: {waiter.stopped_by}"))
    if timed_out or cancelled:
        return output.result(None, timed_out=timed_out, cancelled=cancelled)
    return output.result(waiter.exit_code)
