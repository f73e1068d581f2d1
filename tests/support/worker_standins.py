"""Stand-ins for the parts a worker process calls out to, fast enough for many real jobs.

`RemoteLikeProvider` behaves as an E2B sandbox does where it matters to the queue
(pipeline/sandbox/e2b.py, and E2B's documentation of `Sandbox.create`, `commands.run`,
`kill` and `set_timeout`): every call waits a round trip, a sandbox and what runs in it
outlive the process that created it (`survives_worker`), and any process can kill it or
extend it by its id. Commands are real processes, each in a session of its own under
tests/support/worker_supervisor.py; files are real files; the app is a real HTTP server on
loopback. It does not isolate anything (`isolates_network` False, so workers need
TRAINBOT_ALLOW_UNISOLATED_CODE=1 for the tiny generator's code): it only ever runs the code
below. Everything that happens to a sandbox goes to a journal (JSON lines) that the tests
read: which worker ran which job when, and who killed what.

`TinyGenerator` writes a standard-library train.py and app.py that keep the contract in
pipeline/codegen/contract.py (a majority-class "model"), so a job costs milliseconds of
CPU, not scikit-learn's seconds. A model named "... train=2.5 ..." trains for 2.5 seconds.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

from pipeline.codegen.base import CodeFailure, GeneratedCode, Resource, TaskSpec
from pipeline.errors import SandboxError
from pipeline.sandbox.base import CommandResult, SandboxGone
from tests.support.worker_supervisor import record

SUPERVISOR = Path(__file__).with_name("worker_supervisor.py")
NAME = "standin-remote"
POLL = 0.05
TAIL_CHARS = 20_000
_ID = re.compile(r"standin-[0-9a-f]{12}")


@dataclass(frozen=True)
class RemoteTimings:
    """Seconds each kind of call waits, as an E2B call waits on the network."""

    create: float = 0.05  # E2B: Sandbox.create takes a second or so
    call: float = 0.01  # a file or command round trip

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RemoteTimings:
        return cls(
            create=float(env.get("STANDIN_CREATE_SECONDS", cls.create)),
            call=float(env.get("STANDIN_CALL_SECONDS", cls.call)),
        )


class RemoteLikeProvider:
    name = NAME
    max_lifetime: int | None = None
    isolates_network = False
    survives_worker = True
    concurrent_limit: int | None = None
    # Its commands are real processes on this machine: two at a time unless a test says.
    concurrent_jobs = 2

    def __init__(self, root: Path, *, timings: RemoteTimings, owner: str = "") -> None:
        self.root = root
        self.journal = root / "journal.jsonl"
        self.timings = timings
        self.owner = owner  # the worker id this process runs as, for the journal
        root.mkdir(parents=True, exist_ok=True)

    def create(self, *, job_id: str, timeout: int) -> RemoteLikeSandbox:
        time.sleep(self.timings.create)
        sandbox_id = f"standin-{secrets.token_hex(6)}"
        (self.root / sandbox_id / "work").mkdir(parents=True)
        self._record("create", sandbox=sandbox_id, job=job_id)
        return RemoteLikeSandbox(self, sandbox_id, job_id)

    def kill(self, sandbox_id: str) -> bool:
        time.sleep(self.timings.call)
        directory = self._directory(sandbox_id)
        if directory is None:
            return False
        kill_groups(directory)
        self._record("kill", sandbox=sandbox_id)
        shutil.rmtree(directory, ignore_errors=True)
        return True

    def extend(self, sandbox_id: str, seconds: int) -> datetime:
        time.sleep(self.timings.call)
        if self._directory(sandbox_id) is None:
            raise SandboxGone("the app is gone", detail=f"no sandbox {sandbox_id}")
        return datetime.now(UTC) + timedelta(seconds=seconds)

    def _directory(self, sandbox_id: str) -> Path | None:
        directory = self.root / sandbox_id
        return directory if _ID.fullmatch(sandbox_id) and directory.is_dir() else None

    def _record(self, event: str, **entry: object) -> None:
        record(str(self.journal), event=event, worker=self.owner, **entry)


class RemoteLikeSandbox:
    isolation = "stand-in remote sandbox (tests only): no isolation"

    def __init__(self, provider: RemoteLikeProvider, sandbox_id: str, job_id: str) -> None:
        self.provider = provider
        self.id = sandbox_id
        self.job_id = job_id
        self.directory = provider.root / sandbox_id
        self.work = self.directory / "work"
        self._server: subprocess.Popen[bytes] | None = None
        self._server_logs: tuple[Path, Path] | None = None

    # -- files -------------------------------------------------------------------------

    def write_file(self, path: str, data: bytes | str) -> None:
        target = self._path(path)
        target.write_bytes(data if isinstance(data, bytes) else data.encode())

    def write_file_from(self, path: str, source: Path) -> None:
        shutil.copyfile(source, self._path(path))

    def read_file(self, path: str) -> bytes:
        return self._path(path).read_bytes()  # FileNotFoundError as the Protocol says

    def read_file_to(self, path: str, target: Path) -> None:
        source = self._path(path)
        if not source.is_file():
            raise FileNotFoundError(path)
        shutil.copyfile(source, target)

    # -- commands ------------------------------------------------------------------------

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
        self._alive()
        run_id = secrets.token_hex(4)
        out, err = self.directory / f"{run_id}.out", self.directory / f"{run_id}.err"
        exit_file = self.directory / f"{run_id}.exit"
        supervised = [
            sys.executable,
            str(SUPERVISOR),
            str(self.provider.journal),
            self.id,
            self.job_id,
            self.provider.owner,
            str(exit_file),
            "--",
            *_python(command),
        ]
        proc = self._spawn(supervised, out, err, env)
        deadline = time.monotonic() + timeout
        shown = 0
        stopped = timed_out = False
        while proc.poll() is None:
            shown = _stream(out, shown, on_output)
            if should_stop is not None and should_stop():
                stopped = True
            elif time.monotonic() > deadline:
                timed_out = True
            if stopped or timed_out:
                _kill_group(proc.pid)
                proc.wait()
                self.provider._record(
                    "stop", sandbox=self.id, job=self.job_id, why="stop" if stopped else "timeout"
                )
                break
            time.sleep(POLL)
        _stream(out, shown, on_output, final=True)
        code = None if (stopped or timed_out) else _exit_code(exit_file, proc)
        return CommandResult(
            exit_code=code,
            stdout=_tail(out),
            stderr=_tail(err),
            timed_out=timed_out,
            cancelled=stopped,
        )

    def start_server(
        self, command: list[str], *, port: int, env: Mapping[str, str] | None = None
    ) -> None:
        self._alive()
        logs = (self.directory / "server.out", self.directory / "server.err")
        self._server = self._spawn(_python(command), *logs, env)
        self._server_logs = logs

    def server_exited(self) -> CommandResult | None:
        if self._server is None or self._server_logs is None:
            return None
        code = self._server.poll()
        if code is None:
            return None
        out, err = self._server_logs
        return CommandResult(exit_code=code, stdout=_tail(out), stderr=_tail(err))

    def app_port(self) -> int:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    def url_for(self, port: int) -> str:
        return f"http://127.0.0.1:{port}"

    def extend(self, seconds: int) -> datetime:
        return self.provider.extend(self.id, seconds)

    def kill(self) -> None:
        self.provider.kill(self.id)
        if self._server is not None:
            self._server.wait(5)  # reap it: this process started it

    # -- plumbing ------------------------------------------------------------------------

    def _spawn(
        self, command: list[str], out: Path, err: Path, env: Mapping[str, str] | None
    ) -> subprocess.Popen[bytes]:
        time.sleep(self.provider.timings.call)
        environment = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.work),
            "HOST": "127.0.0.1",
            "PYTHONDONTWRITEBYTECODE": "1",
            **(env or {}),
        }
        with out.open("wb") as stdout, err.open("wb") as stderr:
            proc = subprocess.Popen(
                command,
                cwd=self.work,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # outlives this worker, as a remote VM's process does
            )
        with (self.directory / "groups").open("a") as groups:
            groups.write(f"{proc.pid}\n")
        return proc

    def _path(self, path: str) -> Path:
        time.sleep(self.provider.timings.call)
        self._alive()
        relative = PurePosixPath(path)
        if relative.is_absolute() or ".." in relative.parts:
            raise SandboxError(f"{path} is outside the sandbox's working directory")
        return self.work / relative

    def _alive(self) -> None:
        if not self.work.is_dir():
            raise SandboxGone("the sandbox is gone", detail=f"{self.id} was killed")


def kill_groups(directory: Path) -> None:
    """SIGKILL every process group the sandbox in `directory` started."""
    with contextlib.suppress(FileNotFoundError):
        for line in (directory / "groups").read_text().split():
            _kill_group(int(line))


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` still runs (zombies waiting to be reaped do not)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # proc(5): "pid (comm) state ppid pgrp ..."; comm may hold spaces, so split after ")".
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _python(command: list[str]) -> list[str]:
    return [sys.executable if command[0] in ("python", "python3") else command[0], *command[1:]]


def _exit_code(exit_file: Path, proc: subprocess.Popen[bytes]) -> int | None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return int(exit_file.read_text())
    return proc.returncode


def _stream(
    path: Path, shown: int, on_output: Callable[[str], None] | None, final: bool = False
) -> int:
    """Passes on the whole lines written since `shown` bytes; returns the new offset."""
    try:
        data = path.read_bytes()[shown:]
    except FileNotFoundError:
        return shown
    end = len(data) if final else data.rfind(b"\n") + 1
    for line in data[:end].decode(errors="replace").splitlines():
        if on_output is not None and line.strip():
            on_output(line)
    return shown + end


def _tail(path: Path) -> str:
    try:
        return path.read_bytes()[-TAIL_CHARS:].decode(errors="replace")
    except FileNotFoundError:
        return ""


TRAIN_SECONDS = re.compile(r"\btrain=(\d+(?:\.\d+)?)\b")


class TinyGenerator:
    """Writes the standard-library scripts below; the model's name sets how long it trains."""

    name = "tiny"
    can_repair = False

    def generate(self, spec: TaskSpec, resources: list[Resource]) -> GeneratedCode:
        match = TRAIN_SECONDS.search(spec.name)
        seconds = float(match.group(1)) if match else 0.2
        train = TRAIN_PY.replace("SECONDS = 0.0", f"SECONDS = {seconds!r}")
        return GeneratedCode(files={"train.py": train, "app.py": APP_PY}, provider=self.name)

    def repair(
        self,
        spec: TaskSpec,
        resources: list[Resource],
        previous: GeneratedCode,
        failure: CodeFailure,
    ) -> GeneratedCode:
        return self.generate(spec, resources)


TRAIN_PY = '''\
"""Learns the majority class (or the mean), after waiting as long as a real run would."""
import collections, csv, json, time

SECONDS = 0.0
task = json.load(open("task.json"))
target = task["target"]
with open(task["data_file"], newline="") as f:
    rows = list(csv.DictReader(f))
values = [row[target] for row in rows]
print(f"training on {len(rows)} rows for {SECONDS} s", flush=True)
time.sleep(SECONDS)
if task["task"] == "classification":
    prediction = collections.Counter(values).most_common(1)[0][0]
    metric, score = "accuracy", values.count(prediction) / len(values)
else:
    prediction, metric, score = sum(map(float, values)) / len(values), "r2", 0.0
metrics = {"task": task["task"], "metric": metric, "score": score, "baseline": score,
           "baseline_name": "majority class", "model": "majority class",
           "n_train": len(rows), "n_test": 0, "extra": {}}
features = [{"name": name, "type": "number"} for name in rows[0] if name != target]
schema = {"target": target, "task": task["task"], "features": features,
          "classes": task["classes"], "metrics": metrics, "dropped": []}
json.dump(metrics, open("metrics.json", "w"))
json.dump(schema, open("schema.json", "w"))
json.dump({"prediction": prediction}, open("model.joblib", "w"))
print("done", flush=True)
'''

APP_PY = r'''
"""Serves the majority-class model within the contract's limits (standard library only)."""
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = json.load(open("model.joblib"))
SCHEMA = json.load(open("schema.json"))
MAX_BODY, MAX_ROWS, MAX_DIGITS, MAX_DEPTH = 1_000_000, 1000, 100, 20
ALLOW = {"/predict": "POST", "/health": "GET", "/schema": "GET", "/": "GET"}


class Refused(Exception):
    pass


def checked_int(text):
    if len(text.lstrip("-")) > MAX_DIGITS:
        raise Refused(f"an integer has more than {MAX_DIGITS} digits")
    return int(text)


def depth(text):
    deepest = level = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            level += 1
            deepest = max(deepest, level)
        elif ch in "]}":
            level -= 1
    return deepest


def rows_of(body):
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("the body is not UTF-8 JSON") from None
    if depth(text) > MAX_DEPTH:
        raise Refused(f"the JSON is nested more than {MAX_DEPTH} levels deep")
    try:
        data = json.loads(text, parse_int=checked_int)
    except ValueError:
        raise Refused('the body is not JSON; send {"rows": [{...}]}') from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise Refused('"rows" must be a list of objects')
    if len(rows) > MAX_ROWS:
        raise Refused(f"send at most {MAX_ROWS} rows at once")
    return rows


class Handler(BaseHTTPRequestHandler):
    timeout = 5
    default_request_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def answer(self, status, body, allow=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        self.wfile.write(data)

    def send_error(self, code, message=None, explain=None):
        if code == 501:
            code = 405
        allow = ALLOW.get(self.path.split("?")[0], "GET") if code == 405 else None
        self.answer(code, {"error": message or "this request is refused"}, allow)

    def do_GET(self):
        if self.path == "/health":
            self.answer(200, {"status": "ok"})
        elif self.path == "/schema":
            self.answer(200, SCHEMA)
        elif self.path == "/":
            self.answer(200, {"predict": "POST /predict"})
        elif self.path == "/predict":
            self.answer(405, {"error": "use POST"}, "POST")
        else:
            self.answer(404, {"error": "no such page"})

    def do_POST(self):
        if self.path != "/predict":
            self.answer(405, {"error": "only GET here"}, "GET")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.close_connection = True
            self.answer(413, {"error": f"the body is over {MAX_BODY} bytes"})
            return
        try:
            rows = rows_of(self.rfile.read(length))
        except Refused as refused:
            self.answer(400, {"error": str(refused)})
            return
        self.answer(200, {"predictions": [MODEL["prediction"]] * len(rows)})

    def refuse(self):
        self.answer(405, {"error": "not allowed"}, ALLOW.get(self.path, "GET"))

    do_PUT = do_DELETE = do_PATCH = refuse


ThreadingHTTPServer(
    (os.environ.get("HOST", "0.0.0.0"), int(os.environ["PORT"])), Handler
).serve_forever()
'''


def write_dataset(path: Path, rows: int = 120) -> Path:
    """A small two-class CSV (classes "yes" and "no") that the dataset stage accepts."""
    lines = ["x1,x2,label"]
    for i in range(rows):
        lines.append(f"{i % 17},{(i * 7) % 23},{'yes' if i % 3 else 'no'}")
    path.write_text("\n".join(lines) + "\n")
    return path
