"""The fake E2B SDK's `commands`: processes that really run, signalled as envd signals them.

What envd does (github.com/e2b-dev/infra, packages/envd/internal/services/process/handler/
handler.go), and so what the fake does:
- `New` starts each command without `Setpgid`/`Setsid`: it stays in envd's process group, and
  what it spawns stays in the command's group unless the command makes its own (`setsid`).
  Here: no `start_new_session`, so a command shares this process's group, as in the VM.
- `SendSignal` (the SDK's `CommandHandle.kill()` / `commands.kill(pid)`, SIGKILL) signals only
  the command's own process, never its group, and stops reading its output (`outCancel`), so
  the end event comes at once even while a child still holds the pipes.
- `Wait` otherwise waits for the output pipes to close before it sends the end event.
- The command's `timeout` is the RPC stream's deadline: envd's context kills the process (Go's
  `exec.CommandContext`: the process only) and the SDK raises `TimeoutException`.

The SDK side (.venv/.../e2b/sandbox_sync/commands/command_handle.py, command.py): a stream error
is mapped by `e2b.envd.rpc.handle_rpc_exception_with_health`, which hands back a transport
`ConnectError` unchanged while the sandbox is healthy; a stream that closes without an end event
makes `wait()` raise a plain `Exception("Command ended without an end event")`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from queue import SimpleQueue
from typing import IO, TYPE_CHECKING, Any

from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b import (
    CommandExitException,
    CommandResult,
    SandboxException,
    SandboxNotRunningException,
    TimeoutException,
)
from e2b.envd.rpc import handle_rpc_exception_with_health
from pyqwest import ReadError

if TYPE_CHECKING:
    from tests.fakes.e2b_sdk import FakeE2BSandbox

_EOF = ""
_CANCELLED = "cancelled"  # envd's outCancel: output stops at once


class EndWithoutEndEvent(Exception):
    """Injected as a stream failure: the stream closes cleanly before envd's end event."""


def dropped_connection(message: str = "connection reset by peer") -> ConnectError:
    """A transport failure mid-stream, built as connectrpc builds it (.venv/.../connectrpc/
    _client_sync.py: `raise ConnectError(Code.UNAVAILABLE, str(e)) from e` over pyqwest's
    `ReadError`), which the SDK raises unchanged while the sandbox answers its health probe."""
    cause = ReadError(message)
    error = ConnectError(Code.UNAVAILABLE, str(cause))
    error.__cause__ = cause
    return error


class FakeCommandHandle:
    """Like e2b's CommandHandle: `pid`, `wait(on_stdout=, on_stderr=)`, `kill()`."""

    def __init__(
        self,
        sandbox: FakeE2BSandbox,
        proc: subprocess.Popen[bytes],
        timeout: float | None,
        retain_output: bool,
        failure: BaseException | None = None,
    ) -> None:
        self._sandbox = sandbox
        self._proc = proc
        self._retain = retain_output
        self._failure = failure  # raised into the stream after its first output
        self._chunks: SimpleQueue[tuple[str, str]] = SimpleQueue()
        self._kept: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._open = 2
        self.expired = False
        for name, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            threading.Thread(target=self._read, args=(name, pipe), daemon=True).start()
        self._timer: threading.Timer | None = None
        if timeout:
            self._timer = threading.Timer(timeout, self._expire)
            self._timer.daemon = True
            self._timer.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    def running(self) -> bool:
        return self._proc.poll() is None

    def _read(self, name: str, pipe: IO[bytes] | None) -> None:
        assert pipe is not None
        decoder_buffer = b""
        while chunk := os.read(pipe.fileno(), 4096):
            data = decoder_buffer + chunk
            try:
                text, decoder_buffer = data.decode("utf-8"), b""
            except UnicodeDecodeError as error:  # a split character waits for its rest
                text, decoder_buffer = data[: error.start].decode("utf-8"), data[error.start :]
            if text:
                self._chunks.put((name, text))
        pipe.close()
        self._chunks.put((name, _EOF))

    def _expire(self) -> None:
        self.expired = True
        self.kill()

    def _events(self) -> Iterator[tuple[str, Any]]:
        """Output chunks, then ("end", exit code), as the envd stream delivers them."""
        while self._open:
            name, text = self._chunks.get()
            if name == _CANCELLED:
                break
            if text == _EOF:
                self._open -= 1
                continue
            yield name, text
            self._inject()
        self._inject()  # a command that printed nothing meets its failure before the end
        yield "end", self._proc.wait()

    def _inject(self) -> None:
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def wait(
        self,
        on_pty: Callable[[bytes], None] | None = None,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> CommandResult[Any]:
        callbacks = {"stdout": on_stdout, "stderr": on_stderr}
        code: int | None = None
        try:
            for name, value in self._events():
                if name == "end":
                    code = value
                    continue
                if self._retain:
                    self._kept[name].append(value)
                callback = callbacks[name]
                if callback is not None:
                    callback(value)
        except EndWithoutEndEvent:
            pass
        except Exception as error:
            # The SDK re-raises what the mapping hands back, the transport error itself included.
            raise handle_rpc_exception_with_health(error, self._sandbox.healthy)  # noqa: B904
        if self._timer is not None:
            self._timer.cancel()
        if self._sandbox.killed:
            raise SandboxNotRunningException("The sandbox was killed or reached its timeout.")
        if self.expired:
            raise TimeoutException(
                "context deadline exceeded: This error is likely due to exceeding 'timeout'"
            )
        if code is None:
            raise Exception("Command ended without an end event")  # the SDK raises it so
        stdout = "".join(self._kept["stdout"]) if self._retain else None
        stderr = "".join(self._kept["stderr"]) if self._retain else None
        if code == 0:
            return CommandResult[Any](stderr=stderr, stdout=stdout, exit_code=0, error=None)
        if code < 0:  # envd reports a signal as -1 and names it
            reason = f"signal: {(signal.strsignal(-code) or str(-code)).lower()}"  # as Go says it
            code = -1
        else:
            reason = f"exit status {code}"
        raise CommandExitException(stderr=stderr, stdout=stdout, exit_code=code, error=reason)

    def kill(self) -> bool:
        """SIGKILL to the command's own process only, and its output stops (envd's SendSignal)."""
        if self._proc.poll() is not None:
            return False  # envd no longer knows the process: NOT_FOUND, the SDK answers False
        self._chunks.put((_CANCELLED, ""))
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._proc.pid, signal.SIGKILL)
        return True

    def disconnect(self) -> None:
        pass


class FakeCommands:
    def __init__(self, sandbox: FakeE2BSandbox) -> None:
        self._sandbox = sandbox
        self._handles: dict[int, FakeCommandHandle] = {}

    def run(
        self,
        cmd: str,
        background: bool | None = None,
        envs: dict[str, str] | None = None,
        user: str | None = None,
        cwd: str | None = None,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
        stdin: bool | None = None,
        timeout: float | None = 60,
        request_timeout: float | None = None,
        *,
        retain_output: bool = True,
    ) -> Any:
        box = self._sandbox
        box.runs.append(
            {
                "cmd": cmd,
                "background": background,
                "envs": dict(envs or {}),
                "cwd": cwd,
                "timeout": timeout,
                "retain_output": retain_output,
                "internet": box.internet,
            }
        )
        box.check_running()
        failure = box.take("fail_run_with")
        if failure is not None:  # as Commands._create_handle maps a failed start
            raise handle_rpc_exception_with_health(failure, box.healthy)  # type: ignore[arg-type]
        workdir = box.host_path(cwd or "/home/user")
        if not workdir.is_dir():
            raise SandboxException(f"cwd '{cwd}' does not exist")
        proc = subprocess.Popen(
            ["/bin/bash", "-c", cmd],
            cwd=workdir,
            env={**box.base_env(), **box.envs, **(envs or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        handle = FakeCommandHandle(
            box, proc, timeout, retain_output, failure=box.take("fail_stream_with")
        )
        self._handles[handle.pid] = handle
        if background:
            return handle
        return handle.wait(on_stdout=on_stdout, on_stderr=on_stderr)

    def kill(self, pid: int, request_timeout: float | None = None) -> bool:
        handle = self._handles.get(pid)
        return handle is not None and handle.kill()

    def kill_all(self) -> None:
        for handle in self._handles.values():
            handle.kill()
