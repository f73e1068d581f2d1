"""A sandbox provider that waits as E2B does and runs nothing, for one worker driving hundreds
of jobs (bench/fleet.py).

What a worker does for an E2B job is wait: `Sandbox.create` takes about a second, every file or
command call is an HTTP round trip, and training blocks the job's thread on the command's
stream (pipeline/sandbox/e2b_commands.py polls it every 0.2 s) while the VM does the work. This
stand-in waits the same way, in the calling thread, and does no work: no process, no CPU. What
training would leave behind (metrics.json, schema.json, model.joblib, chart.png) it writes
itself, as the standard-library "majority class" of tests/support/worker_standins.py
TinyGenerator would, from the task.json and data.csv the pipeline uploaded. Every sandbox's app
is served by one shared HTTP server in a process of its own (`AppServer`) under the path
/<sandbox id>/, answering /health, /schema and /predict at once and refusing what the contract
(pipeline/codegen/contract.py) says to refuse, so the deploy stage's real checks pass.

Like E2B, a sandbox outlives the worker (`survives_worker`), and any process holding the
provider can kill or extend it by its id.
"""

from __future__ import annotations

import collections
import csv
import io
import json
import multiprocessing
import secrets
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pipeline.codegen.contract import (
    CHART_FILE,
    DATA_FILE,
    MAX_BODY_BYTES,
    MAX_INT_DIGITS,
    MAX_JSON_DEPTH,
    MAX_ROWS,
    METRICS_FILE,
    MODEL_FILE,
    SCHEMA_FILE,
    TASK_FILE,
    TRAIN_SCRIPT,
)
from pipeline.sandbox.base import CommandResult, SandboxGone
from pipeline.sandbox.e2b import REMOTE_CONCURRENT_JOBS

NAME = "standin-e2b"
APP_PORT = 8000  # E2B's app port inside the VM; here only a part of the URL's shape
POLL = 0.2  # pipeline/sandbox/e2b_commands.py _POLL: how often a waiting command checks a stop
# Only these uploads are kept: the outputs are made from them. The rest (the scripts) is
# waited for and dropped, as it would live in the VM, not in the worker.
KEPT = frozenset({TASK_FILE, DATA_FILE})


@dataclass(frozen=True)
class Waits:
    """Seconds each call waits, about E2B's (bench/workers.py REMOTE: the same numbers)."""

    create: float = 1.0
    call: float = 0.05
    train: float = 30.0


class WaitingProvider:
    name = NAME
    max_lifetime: int | None = None
    # Nothing generated runs anywhere: the code the pipeline uploads is never executed.
    isolates_network = True
    survives_worker = True
    concurrent_limit: int | None = None
    concurrent_jobs = REMOTE_CONCURRENT_JOBS

    def __init__(self, apps: AppServer, waits: Waits) -> None:
        self.apps = apps
        self.waits = waits
        self._sandboxes: dict[str, WaitingSandbox] = {}
        self._lock = threading.Lock()
        self.created = 0
        self.training = 0  # training commands waiting right now
        self.peak_training = 0
        # Cleared, training waits for it before its own wait (a test holds every job there).
        self.gate = threading.Event()
        self.gate.set()

    def create(self, *, job_id: str, timeout: int) -> WaitingSandbox:
        time.sleep(self.waits.create)
        sandbox = WaitingSandbox(self, f"standin-{secrets.token_hex(6)}")
        with self._lock:
            self._sandboxes[sandbox.id] = sandbox
            self.created += 1
        return sandbox

    def kill(self, sandbox_id: str) -> bool:
        time.sleep(self.waits.call)
        with self._lock:
            sandbox = self._sandboxes.pop(sandbox_id, None)
        if sandbox is None:
            return False
        sandbox.gone.set()
        self.apps.remove(sandbox_id)
        return True

    def extend(self, sandbox_id: str, seconds: int) -> datetime:
        time.sleep(self.waits.call)
        with self._lock:
            alive = sandbox_id in self._sandboxes
        if not alive:
            raise SandboxGone("the app is gone", detail=f"no sandbox {sandbox_id}")
        return datetime.now(UTC) + timedelta(seconds=seconds)

    @contextmanager
    def counting(self) -> Iterator[None]:
        with self._lock:
            self.training += 1
            self.peak_training = max(self.peak_training, self.training)
        try:
            yield
        finally:
            with self._lock:
                self.training -= 1

    def alive(self) -> int:
        with self._lock:
            return len(self._sandboxes)


class WaitingSandbox:
    isolation = "stand-in remote sandbox (benchmarks only): runs nothing"

    def __init__(self, provider: WaitingProvider, sandbox_id: str) -> None:
        self.provider = provider
        self.id = sandbox_id
        self.files: dict[str, bytes] = {}
        self.gone = threading.Event()

    def write_file(self, path: str, data: bytes | str) -> None:
        self._call()
        if path in KEPT:
            self.files[path] = data if isinstance(data, bytes) else data.encode()

    def write_file_from(self, path: str, source: Path) -> None:
        self._call()
        if path in KEPT:
            self.files[path] = source.read_bytes()

    def read_file(self, path: str) -> bytes:
        self._call()
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(path) from None

    def read_file_to(self, path: str, target: Path) -> None:
        target.write_bytes(self.read_file(path))

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
        self._call()
        if command[-1:] != [TRAIN_SCRIPT]:
            return CommandResult(exit_code=0, stdout="", stderr="")
        say = on_output or (lambda line: None)
        say("training started")
        with self.provider.counting():
            stopped = self._held(should_stop) or self._wait(
                min(self.provider.waits.train, timeout), should_stop
            )
        if stopped:
            return CommandResult(exit_code=None, stdout="", stderr="", cancelled=True)
        if timeout < self.provider.waits.train:
            return CommandResult(exit_code=None, stdout="", stderr="", timed_out=True)
        self.files.update(training_outputs(self.files))
        self.files.pop(DATA_FILE, None)  # the worker needs it no more
        say("done")
        return CommandResult(exit_code=0, stdout="training started\ndone\n", stderr="")

    def _wait(self, seconds: float, should_stop: Callable[[], bool] | None) -> bool:
        """Waits as a thread blocked on E2B's command stream does, waking to look for a stop;
        True when stopped."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if self.gone.wait(min(POLL, left)):
                raise SandboxGone("the sandbox is gone", detail=f"{self.id} was killed")
            if should_stop is not None and should_stop():
                return True
        return False

    def _held(self, should_stop: Callable[[], bool] | None) -> bool:
        while not self.provider.gate.wait(POLL):
            if self.gone.is_set():
                raise SandboxGone("the sandbox is gone", detail=f"{self.id} was killed")
            if should_stop is not None and should_stop():
                return True
        return False

    def start_server(
        self, command: list[str], *, port: int, env: Mapping[str, str] | None = None
    ) -> None:
        self._call()
        model = json.loads(self.files[MODEL_FILE])
        schema = json.loads(self.files[SCHEMA_FILE])
        self.provider.apps.add(self.id, App(prediction=model["prediction"], schema=schema))

    def server_exited(self) -> CommandResult | None:
        return None

    def app_port(self) -> int:
        return APP_PORT

    def url_for(self, port: int) -> str:
        return f"{self.provider.apps.base_url}/{self.id}"

    def extend(self, seconds: int) -> datetime:
        return self.provider.extend(self.id, seconds)

    def kill(self) -> None:
        self.provider.kill(self.id)

    def _call(self) -> None:
        time.sleep(self.provider.waits.call)
        if self.gone.is_set():
            raise SandboxGone("the sandbox is gone", detail=f"{self.id} was killed")


def training_outputs(files: Mapping[str, bytes]) -> dict[str, bytes]:
    """What TinyGenerator's train.py writes (tests/support/worker_standins.py TRAIN_PY): a
    majority-class model of the uploaded data, its metrics and schema; and a chart."""
    task = json.loads(files[TASK_FILE])
    target = task["target"]
    rows = list(csv.DictReader(io.StringIO(files[DATA_FILE].decode())))
    values = [row[target] for row in rows]
    # A baseline below the score: a model that does not beat its baseline gets a warning in
    # its thread, which a real training run would not earn.
    if task["task"] == "classification":
        prediction: Any = collections.Counter(values).most_common(1)[0][0]
        metric, score = "accuracy", values.count(prediction) / len(values)
        baseline = score / 2
    else:
        prediction, metric, score = sum(map(float, values)) / len(values), "r2", 0.0
        baseline = -1.0
    metrics = {
        "task": task["task"],
        "metric": metric,
        "score": score,
        "baseline": baseline,
        "baseline_name": "a guess",
        "model": "majority class",
        "n_train": len(rows),
        "n_test": 0,
        "extra": {},
    }
    features = [{"name": name, "type": "number"} for name in rows[0] if name != target]
    schema = {
        "target": target,
        "task": task["task"],
        "features": features,
        "classes": task["classes"],
        "metrics": metrics,
        "dropped": [],
    }
    return {
        METRICS_FILE: json.dumps(metrics).encode(),
        SCHEMA_FILE: json.dumps(schema).encode(),
        MODEL_FILE: json.dumps({"prediction": prediction}).encode(),
        CHART_FILE: _CHART,
    }


def _png(width: int, height: int) -> bytes:
    """A grey PNG: the chart a real training run would leave, at a few hundred bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


_CHART = _png(64, 48)


# -- the apps -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    prediction: Any
    schema: dict[str, Any]


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Server(ThreadingHTTPServer):
    # Every app's deploy checks arrive within seconds of each other, where each app would
    # have its own VM: socketserver's backlog of 5 would drop their connections.
    request_queue_size = 1024


class AppServer:
    """One HTTP server on 127.0.0.1 for every stand-in sandbox's app, at /<sandbox id>/, in a
    process of its own: an E2B app runs in its VM, so answering hundreds of deploy checks at
    once must not take the worker's CPU (in the worker's process it did, and the checks'
    5 s deadlines ran out)."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._orders: Any = context.Queue()
        self._port, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(self._orders, child), name="standin-apps", daemon=True
        )
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> AppServer:
        self._process.start()
        self.port = self._port.recv()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._orders.put(None)
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()

    def add(self, sandbox_id: str, app: App) -> None:
        """Serves `app` from a moment on (the deploy stage polls /health until then)."""
        self._orders.put(("add", sandbox_id, app))

    def remove(self, sandbox_id: str) -> None:
        self._orders.put(("remove", sandbox_id, None))


def _serve(orders: Any, port: Any) -> None:
    """The app server's process: serves until told None, adding and removing apps as told."""
    apps: dict[str, App] = {}
    httpd = _Server(("127.0.0.1", 0), _AppHandler)
    httpd.daemon_threads = True
    httpd.apps = apps  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    port.send(httpd.server_address[1])
    while (order := orders.get()) is not None:
        verb, sandbox_id, app = order
        if verb == "add":
            apps[sandbox_id] = app
        else:
            apps.pop(sandbox_id, None)
    httpd.shutdown()
    httpd.server_close()


class _AppHandler(BaseHTTPRequestHandler):
    # The contract's http.server settings: a stalled body is cut off after 5 s, and each
    # answer closes its connection.
    timeout = 5
    default_request_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        app, path = self._route()
        if app is None:
            return
        if path == "/health":
            self._answer(200, {"status": "ok"})
        elif path == "/schema":
            self._answer(200, app.schema)
        elif path == "/":
            self._answer(200, {"predict": "POST /predict"})
        elif path == "/predict":
            self._answer(405, {"error": "use POST"}, allow="POST")
        else:
            self._answer(404, {"error": "no such page"})

    def do_POST(self) -> None:
        app, path = self._route()
        if app is None:
            return
        if path != "/predict":
            self._answer(405, {"error": "only GET here"}, allow="GET")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._answer(413, {"error": f"the body is over {MAX_BODY_BYTES} bytes"})
            return
        try:
            rows = _rows_of(self.rfile.read(length))
        except Refused as refused:
            self._answer(refused.status, {"error": str(refused)})
            return
        self._answer(200, {"predictions": [app.prediction] * len(rows)})

    def _refuse(self) -> None:
        allow = "POST" if self.path.endswith("/predict") else "GET"
        self._answer(405, {"error": "not allowed"}, allow=allow)

    do_PUT = do_DELETE = do_PATCH = _refuse

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        code = 405 if code == 501 else code  # an unknown method
        self._answer(code, {"error": message or "this request is refused"}, allow="GET, POST")

    def _route(self) -> tuple[App | None, str]:
        sandbox_id, _, rest = self.path.split("?")[0].lstrip("/").partition("/")
        app = self.server.apps.get(sandbox_id)  # type: ignore[attr-defined]
        if app is None:
            self._answer(404, {"error": "no such sandbox"})
        return app, "/" + rest

    def _answer(self, status: int, body: dict[str, Any], *, allow: str = "") -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        self.wfile.write(data)


def _rows_of(body: bytes) -> list[dict[str, Any]]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8 JSON") from None
    try:
        data = json.loads(text, parse_int=_checked_int)
    except RecursionError:  # the C decoder's own limit: nested far deeper than the cap
        raise Refused(400, f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError:
        raise Refused(400, 'the body is not JSON; send {"rows": [{...}]}') from None
    if _deeper_than(data, MAX_JSON_DEPTH):
        raise Refused(400, f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep")
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise Refused(400, '"rows" must be a list of objects')
    if len(rows) > MAX_ROWS:
        raise Refused(400, f"send at most {MAX_ROWS} rows at once")
    return rows


def _checked_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise Refused(400, f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether the parsed JSON nests more than `levels` deep. Walked after parsing, not
    scanned before it as a real app must (app.py), since this server shares the worker's
    process: a Python loop over every byte of 200 apps' probes would load the worker."""
    if not isinstance(value, dict | list):
        return False
    if levels == 0:
        return True
    items = value.values() if isinstance(value, dict) else value
    return any(_deeper_than(item, levels - 1) for item in items)
