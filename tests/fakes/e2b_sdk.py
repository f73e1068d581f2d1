"""A fake of the E2B SDK's sync `Sandbox`: the surface TrainBot calls, with its signatures.

    sdk = FakeE2BSandbox.fresh(tmp_path)          # a subclass with its own state
    provider = E2BSandboxProvider(api_key="e2b_test", sandbox_class=sdk, url_scheme="http", ...)

Each sandbox is a directory under `root`; sandbox paths map into it (/home/user/job ->
<root>/<id>/home/user/job). Commands really run: `bash -c <cmd>` with the local Python first on
PATH, an environment of only the sandbox's `envs`, the command's `envs` and a few basics (as
in the VM, nothing of this process's), each in its own process group. Background commands
keep running until killed. Like the SDK, `commands.run` ends a command whose `timeout`
(default 60 s; 0 = none) passes with `TimeoutException`, and a non-zero exit raises
`CommandExitException`. `get_host(port)` answers "127.0.0.1:<port>", as the SDK's debug mode
answers "localhost:<port>": the app is reached over plain http.

Failure knobs on the class (an exception, or a list consumed one per call):
`fail_create_with`, `fail_write_with` (files.write and files.make_dir), `fail_kill_with`.
Records: `create_calls` (every create's arguments), `created`, `kill_calls`, `killed_ids`;
per sandbox `set_timeout_calls`, `network_updates`, `runs` (each commands.run's arguments and
whether internet access was open), `internet`.

The real SDK's exception classes are raised: AuthenticationException without an api_key,
FileNotFoundException for a missing file, SandboxNotRunningException once a sandbox is killed
(SandboxNotFoundException from the control-plane calls, as the API's 404).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from queue import SimpleQueue
from typing import IO, Any, ClassVar

from e2b import (
    AuthenticationException,
    CommandExitException,
    CommandResult,
    FileNotFoundException,
    FileType,
    SandboxException,
    SandboxNotFoundException,
    SandboxNotRunningException,
    TimeoutException,
    WriteInfo,
)
from e2b.sandbox.utils import class_method_variant

Failure = BaseException | list[BaseException] | None
_EOF = ""


def _take(knob: Failure) -> BaseException | None:
    if isinstance(knob, list):
        return knob.pop(0) if knob else None
    return knob


class FakeCommandHandle:
    """Like e2b's CommandHandle: `pid`, `wait(on_stdout=, on_stderr=)`, `kill()`."""

    def __init__(
        self,
        sandbox: FakeE2BSandbox,
        proc: subprocess.Popen[bytes],
        timeout: float | None,
        retain_output: bool,
    ) -> None:
        self._sandbox = sandbox
        self._proc = proc
        self._retain = retain_output
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

    def wait(
        self,
        on_pty: Callable[[bytes], None] | None = None,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> CommandResult[Any]:
        callbacks = {"stdout": on_stdout, "stderr": on_stderr}
        while self._open:
            name, text = self._chunks.get()
            if text == _EOF:
                self._open -= 1
                continue
            if self._retain:
                self._kept[name].append(text)
            callback = callbacks[name]
            if callback is not None:
                callback(text)
        code = self._proc.wait()
        if self._timer is not None:
            self._timer.cancel()
        if self._sandbox.killed:
            raise SandboxNotRunningException("The sandbox was killed or reached its timeout.")
        if self.expired:
            raise TimeoutException(
                "context deadline exceeded: This error is likely due to exceeding 'timeout'"
            )
        stdout = "".join(self._kept["stdout"]) if self._retain else None
        stderr = "".join(self._kept["stderr"]) if self._retain else None
        if code == 0:
            return CommandResult[Any](stderr=stderr, stdout=stdout, exit_code=0, error=None)
        if code < 0:  # envd reports a signal as -1 and names it
            error = f"signal: {(signal.strsignal(-code) or str(-code)).lower()}"  # as Go says it
            code = -1
        else:
            error = f"exit status {code}"
        raise CommandExitException(stderr=stderr, stdout=stdout, exit_code=code, error=error)

    def kill(self) -> bool:
        if self._proc.poll() is not None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        return True

    def disconnect(self) -> None:
        pass


class _FakeFiles:
    def __init__(self, sandbox: FakeE2BSandbox) -> None:
        self._sandbox = sandbox

    def write(
        self,
        path: str,
        data: str | bytes | IO[Any],
        user: str | None = None,
        request_timeout: float | None = None,
        gzip: bool = False,
        use_octet_stream: bool | None = None,
        metadata: dict[str, str] | None = None,
    ) -> WriteInfo:
        box = self._sandbox
        box.check_running()
        box.check_write()
        target = box.host_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = data if isinstance(data, str | bytes) else data.read()
        target.write_bytes(payload.encode("utf-8") if isinstance(payload, str) else payload)
        return WriteInfo(name=target.name, type=FileType.FILE, path=path, metadata=metadata)

    def read(
        self,
        path: str,
        format: str = "text",
        user: str | None = None,
        request_timeout: float | None = None,
        gzip: bool = False,
        stream_idle_timeout: float | None = None,
    ) -> str | bytearray:
        self._sandbox.check_running()
        target = self._sandbox.host_path(path)
        if not target.is_file():
            raise FileNotFoundException(f"path '{path}' does not exist")
        data = target.read_bytes()
        return bytearray(data) if format == "bytes" else data.decode("utf-8")

    def make_dir(
        self, path: str, user: str | None = None, request_timeout: float | None = None
    ) -> bool:
        box = self._sandbox
        box.check_running()
        box.check_write()
        target = box.host_path(path)
        if target.is_dir():
            return False
        target.mkdir(parents=True)
        return True


class _FakeCommands:
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
            start_new_session=True,
        )
        handle = FakeCommandHandle(box, proc, timeout, retain_output)
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


class FakeE2BSandbox:
    root: ClassVar[Path]
    fail_create_with: ClassVar[Failure] = None
    fail_write_with: ClassVar[Failure] = None
    fail_kill_with: ClassVar[Failure] = None
    create_calls: ClassVar[list[dict[str, Any]]] = []
    created: ClassVar[list[FakeE2BSandbox]] = []
    kill_calls: ClassVar[list[dict[str, Any]]] = []
    killed_ids: ClassVar[list[str]] = []
    live: ClassVar[dict[str, FakeE2BSandbox]] = {}

    @classmethod
    def fresh(cls, root: Path) -> type[FakeE2BSandbox]:
        """A subclass with its own state, its sandboxes under `root`."""
        state: dict[str, Any] = {
            "root": root,
            "fail_create_with": None,
            "fail_write_with": None,
            "fail_kill_with": None,
            "create_calls": [],
            "created": [],
            "kill_calls": [],
            "killed_ids": [],
            "live": {},
        }
        return type("FakeE2B", (cls,), state)

    @classmethod
    def kill_all(cls) -> None:
        """Test teardown: kill every live sandbox of this class."""
        for sandbox in list(cls.live.values()):
            sandbox._destroy()

    def __init__(self, sandbox_id: str, **created_with: Any) -> None:
        self.sandbox_id = sandbox_id
        self.template: str = created_with["template"]
        self.timeout: int | None = created_with["timeout"]
        self.metadata: dict[str, str] = dict(created_with["metadata"] or {})
        self.envs: dict[str, str] = dict(created_with["envs"] or {})
        self.internet: bool = created_with["allow_internet_access"] is not False
        self.api_key: str = created_with["api_key"]
        self.directory = self.root / sandbox_id
        self.killed = False
        self.set_timeout_calls: list[int] = []
        self.network_updates: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.files = _FakeFiles(self)
        self.commands = _FakeCommands(self)
        for folder in ("home/user", "tmp"):
            (self.directory / folder).mkdir(parents=True)

    @classmethod
    def create(
        cls,
        template: str | None = None,
        timeout: int | None = None,
        metadata: dict[str, str] | None = None,
        envs: dict[str, str] | None = None,
        secure: bool | None = None,
        allow_internet_access: bool | None = None,
        mcp: Any = None,
        network: Any = None,
        iam: Any = None,
        lifecycle: Any = None,
        volume_mounts: Any = None,
        logger: Any = None,
        idempotency_key: str | None = None,
        **opts: Any,
    ) -> FakeE2BSandbox:
        call = {
            "template": template,
            "timeout": timeout,
            "metadata": metadata,
            "envs": envs,
            "allow_internet_access": allow_internet_access,
            "network": network,
            **opts,
        }
        cls.create_calls.append(call)
        failure = _take(cls.fail_create_with)
        if failure is not None:
            raise failure
        if not opts.get("api_key"):  # the fake never falls back to E2B_API_KEY
            raise AuthenticationException("API key is required")
        sandbox = cls(f"fake{secrets.token_hex(6)}", **call)
        cls.created.append(sandbox)
        cls.live[sandbox.sandbox_id] = sandbox
        return sandbox

    # -- the SDK's instance surface -------------------------------------------------------

    def get_host(self, port: int) -> str:
        return f"127.0.0.1:{port}"

    def set_timeout(self, timeout: int, **opts: Any) -> None:
        if self.killed:
            raise SandboxNotFoundException(f"Sandbox {self.sandbox_id} not found")
        self.set_timeout_calls.append(timeout)

    def update_network(self, network: dict[str, Any], **opts: Any) -> None:
        if self.killed:
            raise SandboxNotFoundException(f"Sandbox {self.sandbox_id} not found")
        self.network_updates.append(dict(network))
        self.internet = network.get("allow_internet_access", True) is not False

    @class_method_variant[Callable[..., bool]]("_cls_kill")
    def kill(self, **opts: Any) -> bool:
        return type(self)._cls_kill(self.sandbox_id, **{"api_key": self.api_key, **opts})

    @classmethod
    def _cls_kill(cls, sandbox_id: str, **opts: Any) -> bool:
        cls.kill_calls.append({"sandbox_id": sandbox_id, **opts})
        failure = _take(cls.fail_kill_with)
        if failure is not None:
            raise failure
        sandbox = cls.live.get(sandbox_id)
        if sandbox is None:
            return False
        sandbox._destroy()
        cls.killed_ids.append(sandbox_id)
        return True

    # -- for the fake's parts and the tests -----------------------------------------------

    def host_path(self, path: str) -> Path:
        pure = PurePosixPath(path)
        if not pure.is_absolute() or ".." in pure.parts:
            raise SandboxException(f"the fake wants absolute sandbox paths, not {path!r}")
        return self.directory.joinpath(*pure.parts[1:])

    def base_env(self) -> dict[str, str]:
        return {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(self.host_path("/home/user")),
            "USER": "user",
            "LANG": "C.UTF-8",
            "TMPDIR": str(self.host_path("/tmp")),
            "E2B_SANDBOX": "true",
            "E2B_SANDBOX_ID": self.sandbox_id,
        }

    def check_running(self) -> None:
        if self.killed:
            raise SandboxNotRunningException("The sandbox was killed or reached its timeout.")

    def check_write(self) -> None:
        failure = _take(type(self).fail_write_with)
        if failure is not None:
            raise failure

    def _destroy(self) -> None:
        if self.killed:
            return
        self.killed = True
        type(self).live.pop(self.sandbox_id, None)
        self.commands.kill_all()
        shutil.rmtree(self.directory, ignore_errors=True)
