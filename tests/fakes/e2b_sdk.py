"""A fake of the E2B SDK's sync `Sandbox`: the surface TrainBot calls, with its signatures.

    sdk = FakeE2BSandbox.fresh(tmp_path)          # a subclass with its own state
    provider = E2BSandboxProvider(api_key="e2b_test", sandbox_class=sdk, url_scheme="http", ...)

Each sandbox is a directory under `root`; sandbox paths map into it (/home/user/job ->
<root>/<id>/home/user/job). Commands really run (see `tests/fakes/e2b_commands.py`, which also
says how they are signalled): `bash -c <cmd>` with the local Python first on PATH, an
environment of only the sandbox's `envs`, the command's `envs` and a few basics (as in the VM,
nothing of this process's). `get_host(port)` answers "127.0.0.1:<port>", as the SDK's debug mode
answers "localhost:<port>": the app is reached over plain http.

Lifetime, as the E2B API keeps it (github.com/e2b-dev/infra: packages/api/internal/handlers/
timeout_helper.go, orchestrator/keep_alive.go, sandbox/store.go; https://e2b.dev/docs/sandbox):
a plan caps a sandbox's life counted from its start (`plan_max_lifetime`: 1 hour on Hobby, 24 on
Pro). `create(timeout=)` past the cap is refused (400); `set_timeout` sets the end to
`now + timeout` but silently clamps it to `start + cap`, may shorten it, and is refused (400)
once the cap has passed; `get_info().end_at` tells the real end; at its end the sandbox is gone.
`set_timeout`, `get_info` and `kill` are also class methods taking a sandbox id, as in the SDK
(e2b/sandbox_sync/main.py:600 `@class_method_variant("_cls_set_timeout")`, :704, :547), so any process
reaches a sandbox by id; an id E2B no longer knows (killed, expired, never made) is the API's 404.

Files, as the SDK sends them (.venv/.../e2b/sandbox_sync/filesystem/filesystem.py): a `str` or
`bytes` body, and a `format="bytes"`/`"text"` read, are one in-memory request bounded by the
request timeout as a whole-request deadline (`REQUEST_TIMEOUT`, 60 s, e2b/connection_config.py;
`request_timeout=0` lifts it), which raises `httpx.ReadTimeout` (pyqwest/httpx/_transport.py
`map_timeout_error`). A file-like or iterable body, and a `format="stream"` read, are streamed
with no total deadline. Set `bytes_per_second` (and a test-scaled `default_request_timeout`) to
make transfers take time.

Failure knobs on the class (an exception, or a list consumed one per call):
`fail_create_with`, `fail_write_with` (files.write and files.make_dir), `fail_kill_with`,
`fail_set_timeout_with` (set_timeout, by instance or id),
`fail_run_with` (a command's start), `fail_stream_with` (raised into a command's output stream
after its first chunk: `dropped_connection()`, or `EndWithoutEndEvent()`).
Records: `create_calls` (every create's arguments), `created`, `kill_calls`, `killed_ids`;
per sandbox `set_timeout_calls`, `network_updates`, `runs` (each commands.run's arguments and
whether internet access was open), `internet`, `started_at` (tests may move it back).

The real SDK's exception classes are raised: AuthenticationException without an api_key (on every
control-plane call, as the SDK's ApiClient refuses to start without one: e2b/api/__init__.py),
FileNotFoundException for a missing file, SandboxNotRunningException once a sandbox is killed
(SandboxNotFoundException from the control-plane calls, as the API's 404).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO, Any, ClassVar

import httpx
from e2b import (
    AuthenticationException,
    FileNotFoundException,
    FileType,
    SandboxException,
    SandboxInfo,
    SandboxNotFoundException,
    SandboxNotRunningException,
    SandboxState,
    WriteInfo,
)
from e2b.api import api_exception_from_code
from e2b.connection_config import REQUEST_TIMEOUT, ConnectionConfig
from e2b.sandbox.filesystem.filesystem import FileStreamReader
from e2b.sandbox.main import SandboxBase
from e2b.sandbox.utils import class_method_variant

from tests.fakes.e2b_commands import EndWithoutEndEvent, FakeCommands, dropped_connection

__all__ = ["EndWithoutEndEvent", "FakeE2BSandbox", "dropped_connection"]

Failure = BaseException | list[BaseException] | None
HOBBY = 3600  # seconds: the Hobby plan's cap (Pro: 86_400), the SDK's set_timeout docstring
_CHUNK = 64 * 1024  # httpx reads a file-like body in chunks of this size


def _take(knob: Failure) -> BaseException | None:
    if isinstance(knob, list):
        return knob.pop(0) if knob else None
    return knob


def _now() -> datetime:
    return datetime.now(UTC)


def _require_api_key(opts: dict[str, Any]) -> None:
    """The SDK's ApiClient refuses to start without a key (e2b/api/__init__.py:249, `ApiClient`); the
    fake never falls back to E2B_API_KEY, so a call that forgot its key fails here."""
    if not opts.get("api_key"):
        raise AuthenticationException("API key is required")


class _FileStream(httpx.SyncByteStream):
    """A download body read from disk chunk by chunk, at the fake's transfer rate."""

    def __init__(self, path: Path, pace: Callable[[int], None]) -> None:
        self._path = path
        self._pace = pace

    def __iter__(self) -> Iterator[bytes]:
        with self._path.open("rb") as file:
            while chunk := file.read(_CHUNK):
                self._pace(len(chunk))
                yield chunk


class _FakeFiles:
    def __init__(self, sandbox: FakeE2BSandbox) -> None:
        self._sandbox = sandbox

    def write(
        self,
        path: str,
        data: str | bytes | IO[Any] | Iterable[bytes],
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
        if isinstance(data, str | bytes):
            payload = data.encode("utf-8") if isinstance(data, str) else data
            box.transfer(len(payload), box.deadline(request_timeout))
            target.write_bytes(payload)
        else:  # streamed: no client-side deadline, however long it takes
            with target.open("wb") as out:
                for chunk in _chunks(data):
                    box.transfer(len(chunk), None)
                    out.write(chunk)
        return WriteInfo(name=target.name, type=FileType.FILE, path=path, metadata=metadata)

    def read(
        self,
        path: str,
        format: str = "text",
        user: str | None = None,
        request_timeout: float | None = None,
        gzip: bool = False,
        stream_idle_timeout: float | None = None,
    ) -> str | bytearray | FileStreamReader:
        box = self._sandbox
        box.check_running()
        target = box.host_path(path)
        if not target.is_file():
            raise FileNotFoundException(f"path '{path}' does not exist")
        if format == "stream":  # the total deadline only when one is set explicitly
            deadline = ConnectionConfig._get_request_timeout(None, request_timeout)
            started = time.monotonic()

            def pace(size: int) -> None:
                left = None if deadline is None else deadline - (time.monotonic() - started)
                box.transfer(size, left)

            body = _FileStream(target, pace)
            return FileStreamReader(httpx.Response(200, stream=body))
        data = target.read_bytes()
        box.transfer(len(data), box.deadline(request_timeout))
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


def _chunks(data: IO[Any] | Iterable[bytes]) -> Iterator[bytes]:
    read = getattr(data, "read", None)
    if read is None:
        yield from data  # type: ignore[misc]
        return
    while chunk := read(_CHUNK):
        yield chunk.encode("utf-8") if isinstance(chunk, str) else chunk


class FakeE2BSandbox:
    root: ClassVar[Path]
    plan_max_lifetime: ClassVar[int] = HOBBY
    default_request_timeout: ClassVar[float] = REQUEST_TIMEOUT
    bytes_per_second: ClassVar[float | None] = None  # None: transfers take no time
    fail_create_with: ClassVar[Failure] = None
    fail_write_with: ClassVar[Failure] = None
    fail_kill_with: ClassVar[Failure] = None
    fail_set_timeout_with: ClassVar[Failure] = None
    fail_run_with: ClassVar[Failure] = None
    fail_stream_with: ClassVar[Failure] = None
    create_calls: ClassVar[list[dict[str, Any]]] = []
    created: ClassVar[list[FakeE2BSandbox]] = []
    kill_calls: ClassVar[list[dict[str, Any]]] = []
    killed_ids: ClassVar[list[str]] = []
    live: ClassVar[dict[str, FakeE2BSandbox]] = {}

    @classmethod
    def fresh(cls, root: Path, **knobs: Any) -> type[FakeE2BSandbox]:
        """A subclass with its own state, its sandboxes under `root`."""
        state: dict[str, Any] = {
            "root": root,
            "fail_create_with": None,
            "fail_write_with": None,
            "fail_kill_with": None,
            "fail_set_timeout_with": None,
            "fail_run_with": None,
            "fail_stream_with": None,
            "create_calls": [],
            "created": [],
            "kill_calls": [],
            "killed_ids": [],
            "live": {},
            **knobs,
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
        self.timeout: int = created_with["timeout"]
        self.metadata: dict[str, str] = dict(created_with["metadata"] or {})
        self.envs: dict[str, str] = dict(created_with["envs"] or {})
        self.internet: bool = created_with["allow_internet_access"] is not False
        self.api_key: str = created_with["api_key"]
        self.directory = self.root / sandbox_id
        self.killed = False
        self.started_at = _now()
        self.end_at = self.started_at + timedelta(seconds=self.timeout)
        self.set_timeout_calls: list[int] = []
        self.network_updates: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []
        self.files = _FakeFiles(self)
        self.commands = FakeCommands(self)
        self._end_timer: threading.Timer | None = None
        for folder in ("home/user", "tmp"):
            (self.directory / folder).mkdir(parents=True)
        self._arm_end()

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
        _require_api_key(opts)
        lifetime = SandboxBase.default_sandbox_timeout if timeout is None else timeout
        if lifetime <= 0:  # timeout_helper.go validateAndParseTimeout
            raise api_exception_from_code(400, "Timeout must be greater than 0")
        if lifetime > cls.plan_max_lifetime:
            hours = cls.plan_max_lifetime // 3600
            raise api_exception_from_code(400, f"Timeout cannot be greater than {hours} hours")
        sandbox = cls(f"fake{secrets.token_hex(6)}", **{**call, "timeout": lifetime})
        cls.created.append(sandbox)
        cls.live[sandbox.sandbox_id] = sandbox
        return sandbox

    # -- the SDK's instance surface -------------------------------------------------------

    def get_host(self, port: int) -> str:
        return f"127.0.0.1:{port}"

    @class_method_variant[Callable[..., None]]("_cls_set_timeout")
    def set_timeout(self, timeout: int, **opts: Any) -> None:
        type(self)._cls_set_timeout(self.sandbox_id, timeout, **{"api_key": self.api_key, **opts})

    @classmethod
    def _cls_set_timeout(cls, sandbox_id: str, timeout: int, **opts: Any) -> None:
        """keep_alive.go KeepAliveFor: `now + min(timeout, cap left)`; shorter is allowed.

        An unknown id is the API's 404 (e2b/sandbox_sync/sandbox_api.py:182, `_cls_set_timeout`).
        """
        _require_api_key(opts)
        failure = _take(cls.fail_set_timeout_with)
        if failure is not None:
            raise failure
        sandbox = cls._known(sandbox_id)
        sandbox.set_timeout_calls.append(timeout)
        now = _now()
        cap = timedelta(seconds=cls.plan_max_lifetime)
        if now - sandbox.started_at > cap:
            raise api_exception_from_code(400, "Max instance length exceeded")
        left = cap - (now - sandbox.started_at)
        sandbox.end_at = now + min(left, timedelta(seconds=max(0, timeout)))
        sandbox._arm_end()

    @class_method_variant[Callable[..., SandboxInfo]]("_cls_get_info")
    def get_info(self, **opts: Any) -> SandboxInfo:
        return type(self)._cls_get_info(self.sandbox_id, **{"api_key": self.api_key, **opts})

    @classmethod
    def _cls_get_info(cls, sandbox_id: str, **opts: Any) -> SandboxInfo:
        """An unknown id is the API's 404 (e2b/sandbox_sync/sandbox_api.py:122, `_cls_get_info`)."""
        _require_api_key(opts)
        sandbox = cls._known(sandbox_id)
        return SandboxInfo(
            sandbox_id=sandbox.sandbox_id,
            sandbox_domain=None,
            template_id=sandbox.template,
            name=sandbox.template,
            metadata=dict(sandbox.metadata),
            started_at=sandbox.started_at,
            end_at=sandbox.end_at,
            state=SandboxState.RUNNING,
            cpu_count=2,
            memory_mb=1024,
            envd_version="0.6.8",
            allow_internet_access=sandbox.internet,
        )

    def update_network(self, network: dict[str, Any], **opts: Any) -> None:
        self._check_known()
        self.network_updates.append(dict(network))
        self.internet = network.get("allow_internet_access", True) is not False

    @class_method_variant[Callable[..., bool]]("_cls_kill")
    def kill(self, **opts: Any) -> bool:
        return type(self)._cls_kill(self.sandbox_id, **{"api_key": self.api_key, **opts})

    @classmethod
    def _cls_kill(cls, sandbox_id: str, **opts: Any) -> bool:
        cls.kill_calls.append({"sandbox_id": sandbox_id, **opts})
        _require_api_key(opts)
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
            "E2B_SANDBOX_ID": self.sandbox_id,  # also how `_destroy` finds the VM's processes
        }

    def check_running(self) -> None:
        if self.killed:
            raise SandboxNotRunningException("The sandbox was killed or reached its timeout.")

    def healthy(self) -> bool:
        """envd's health probe, as `check_sandbox_health` reads it."""
        return not self.killed

    def check_write(self) -> None:
        failure = self.take("fail_write_with")
        if failure is not None:
            raise failure

    def take(self, knob: str) -> BaseException | None:
        return _take(getattr(type(self), knob))

    def deadline(self, request_timeout: float | None) -> float | None:
        """The whole-request deadline of an in-memory request (connection_config.py)."""
        return ConnectionConfig._get_request_timeout(
            type(self).default_request_timeout, request_timeout
        )

    def transfer(self, size: int, deadline: float | None) -> None:
        """Spend the time `size` bytes take; past `deadline`, fail as the SDK's transport does."""
        rate = type(self).bytes_per_second
        if rate is None:
            return
        seconds = size / rate
        if deadline is not None and seconds > deadline:
            time.sleep(max(0.0, deadline))
            raise httpx.ReadTimeout("timed out")
        time.sleep(seconds)

    def _check_known(self) -> None:
        type(self)._known(self.sandbox_id)

    @classmethod
    def _known(cls, sandbox_id: str) -> FakeE2BSandbox:
        """The live sandbox `sandbox_id`, or the API's 404 as the SDK raises it
        (e2b/sandbox_sync/sandbox_api.py: `SandboxNotFoundException(f"Sandbox {id} not found")`).
        Past its end it is gone even if the timer that removes it has not fired yet."""
        sandbox = cls.live.get(sandbox_id)
        if sandbox is not None and not sandbox.killed and sandbox.end_at <= _now():
            sandbox._destroy()
        if sandbox is None or sandbox.killed:
            raise SandboxNotFoundException(f"Sandbox {sandbox_id} not found")
        return sandbox

    def _arm_end(self) -> None:
        """E2B ends a sandbox at its end time."""
        if self._end_timer is not None:
            self._end_timer.cancel()
        delay = max(0.0, (self.end_at - _now()).total_seconds())
        self._end_timer = threading.Timer(delay, self._destroy)
        self._end_timer.daemon = True
        self._end_timer.start()

    def _destroy(self) -> None:
        if self.killed:
            return
        self.killed = True
        if self._end_timer is not None:
            self._end_timer.cancel()
        type(self).live.pop(self.sandbox_id, None)
        self.commands.kill_all()
        self._kill_every_process()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _kill_every_process(self) -> None:
        """The VM goes, and every process in it: children that left their group too."""
        marker = f"E2B_SANDBOX_ID={self.sandbox_id}".encode()
        for _ in range(3):  # a process may fork while the first pass runs
            found = False
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    environ = (entry / "environ").read_bytes().split(b"\0")
                except OSError:
                    continue
                if marker in environ:
                    found = True
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(entry.name), signal.SIGKILL)
            if not found:
                return
            time.sleep(0.05)
