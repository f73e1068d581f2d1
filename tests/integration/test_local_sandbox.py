"""The local sandbox for real: processes, limits, bubblewrap isolation, servers on loopback."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import SandboxError
from pipeline.sandbox.base import CommandResult
from pipeline.sandbox.local import LocalSandbox, LocalSandboxProvider
from tests.support.host_network import DIAL_ALL, bait
from tests.support.sandbox_code import HELLO_SERVER, SERVICE_SECRETS

PROJECT = Path(__file__).resolve().parents[2]
# bubblewrap is part of the test setup (`make test` installs it): without it these fail,
# they do not skip.
ISOLATIONS = ["process", "bwrap"]


_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def make_provider(
    root: Path,
    isolation: str,
    *,
    memory_mb: int = 4096,
    cpu_seconds: int = 60,
    file_size_mb: int = 64,
) -> LocalSandboxProvider:
    return LocalSandboxProvider(
        root,
        memory_mb=memory_mb,
        cpu_seconds=cpu_seconds,
        file_size_mb=file_size_mb,
        isolation=isolation,
    )


@pytest.fixture(params=ISOLATIONS)
def isolation(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "sandboxes"


@pytest.fixture
def provider(root: Path, isolation: str) -> LocalSandboxProvider:
    return make_provider(root, isolation)


@pytest.fixture
def sandbox(provider: LocalSandboxProvider) -> Iterator[LocalSandbox]:
    sandbox = provider.create(job_id="3f2a9c1e-test", timeout=600)
    yield sandbox
    sandbox.kill()


def run_python(
    sandbox: LocalSandbox,
    code: str,
    *,
    timeout: float = 60,
    on_output: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    network: bool = False,
    env: dict[str, str] | None = None,
) -> CommandResult:
    sandbox.write_file("main.py", code)
    return sandbox.run(
        ["python", "main.py"],
        timeout=timeout,
        env=env,
        on_output=on_output,
        should_stop=should_stop,
        network=network,
    )


def get(url: str) -> bytes:
    with _no_proxy.open(url, timeout=2) as response:
        return bytes(response.read())


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False


def answers(url: str) -> bool:
    try:
        return get(url) == b"hello"
    except (OSError, urllib.error.URLError):
        return False


def start_hello_server(sandbox: LocalSandbox) -> str:
    sandbox.write_file("app.py", HELLO_SERVER)
    port = sandbox.app_port()
    sandbox.start_server(["python", "app.py"], port=port, env={"HOST": "127.0.0.1"})
    url = sandbox.url_for(port)
    assert wait_until(lambda: answers(url)), sandbox.server_exited()
    return url


# Files


def test_files_round_trip_inside_the_working_directory(sandbox: LocalSandbox) -> None:
    sandbox.write_file("data/train.csv", "a,b\n1,2\n")
    sandbox.write_file("blob.bin", b"\x00\x01\xff")

    assert sandbox.read_file("data/train.csv") == b"a,b\n1,2\n"
    assert sandbox.read_file("./blob.bin") == b"\x00\x01\xff"
    assert (sandbox.workdir / "data" / "train.csv").is_file()
    result = run_python(sandbox, "print(open('data/train.csv').read().splitlines()[1])")
    assert result.stdout == "1,2"
    with pytest.raises(FileNotFoundError):
        sandbox.read_file("missing.txt")


@pytest.mark.parametrize("path", ["/etc/passwd", "../escape.txt", "data/../../escape.txt", ""])
def test_paths_outside_the_sandbox_are_rejected(sandbox: LocalSandbox, path: str) -> None:
    with pytest.raises(SandboxError):
        sandbox.write_file(path, "x")
    with pytest.raises(SandboxError):
        sandbox.read_file(path)
    assert not (sandbox.directory.parent / "escape.txt").exists()


def test_links_and_pipes_planted_by_the_code_are_not_followed(
    sandbox: LocalSandbox, tmp_path: Path
) -> None:
    secret = tmp_path / "outside.txt"
    secret.write_text("host secret")
    code = f"""
import os
os.symlink({str(secret)!r}, "model.joblib")
os.makedirs("real")
os.symlink({str(tmp_path)!r}, "linked_dir")
os.mkfifo("pipe")
"""
    assert run_python(sandbox, code).ok

    for path in ("model.joblib", "linked_dir/outside.txt", "pipe"):
        with pytest.raises(SandboxError):
            sandbox.read_file(path)
    with pytest.raises(SandboxError):
        sandbox.write_file("model.joblib", "overwrite")
    assert secret.read_text() == "host secret"


# Running commands


def test_output_streams_line_by_line_in_order(sandbox: LocalSandbox) -> None:
    code = """
import sys, time
print("out 1")
time.sleep(0.3)
print("err 1", file=sys.stderr)
time.sleep(0.3)
print("out 2", end="")
"""
    seen: list[tuple[float, str]] = []
    result = run_python(sandbox, code, on_output=lambda line: seen.append((time.monotonic(), line)))

    assert [line for _, line in seen] == ["out 1", "err 1", "out 2"]
    assert seen[1][0] - seen[0][0] > 0.15  # streamed as it came, not all at the end
    assert result.stdout == "out 1\nout 2"
    assert result.stderr == "err 1"
    assert result.ok


def test_result_keeps_only_a_tail_of_long_output(sandbox: LocalSandbox) -> None:
    lines: list[str] = []
    result = run_python(sandbox, "for i in range(5000): print('line', i)", on_output=lines.append)

    assert len(lines) == 5000
    tail = result.stdout.splitlines()
    assert tail[-1] == "line 4999"
    assert len(tail) <= 200


def test_exit_code_is_reported(sandbox: LocalSandbox) -> None:
    result = run_python(sandbox, "import sys; print('bye'); sys.exit(3)")

    assert result.exit_code == 3
    assert not result.ok
    assert not result.timed_out


def test_service_secrets_never_reach_the_code(
    sandbox: LocalSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SERVICE_SECRETS.items():
        monkeypatch.setenv(name, value)
    code = "import json, os; open('env.json', 'w').write(json.dumps(dict(os.environ)))"

    assert run_python(sandbox, code, env={"PORT": "8000"}).ok

    dumped = sandbox.read_file("env.json").decode()
    environment = json.loads(dumped)
    assert environment["PORT"] == "8000"
    assert environment["MPLBACKEND"] == "Agg"
    for name, value in SERVICE_SECRETS.items():
        assert name not in dumped
        assert value not in dumped
    assert not [name for name in environment if name.startswith(("SLACK", "TRAINBOT", "E2B"))]


def test_timeout_kills_the_command_and_its_children(sandbox: LocalSandbox) -> None:
    code = """
import subprocess, sys
child = "import time\\nwhile True:\\n    open('heartbeat', 'a').write('.')\\n    time.sleep(0.1)"
subprocess.Popen([sys.executable, "-c", child])
print("started", flush=True)
import time; time.sleep(300)
"""
    started = time.monotonic()
    result = run_python(sandbox, code, timeout=2)

    assert result.timed_out
    assert result.exit_code is None
    assert time.monotonic() - started < 10
    beats = sandbox.read_file("heartbeat")
    time.sleep(0.6)
    assert sandbox.read_file("heartbeat") == beats  # the child died too


def test_should_stop_cancels_the_command(sandbox: LocalSandbox) -> None:
    asked_at = time.monotonic() + 1.0
    started = time.monotonic()
    result = run_python(
        sandbox, "import time; time.sleep(300)", should_stop=lambda: time.monotonic() > asked_at
    )

    assert result.cancelled
    assert result.exit_code is None
    assert not result.timed_out
    assert time.monotonic() - started < 5


def test_kill_during_a_run_cancels_it(sandbox: LocalSandbox) -> None:
    killer = threading.Timer(1.0, sandbox.kill)
    killer.start()
    started = time.monotonic()
    result = run_python(sandbox, "import time; time.sleep(300)")
    killer.join()

    assert result.cancelled
    assert time.monotonic() - started < 10
    assert not sandbox.directory.exists()


def test_cpu_limit_stops_a_busy_loop(root: Path, isolation: str) -> None:
    sandbox = make_provider(root, isolation, cpu_seconds=1).create(job_id="cpu", timeout=60)
    try:
        started = time.monotonic()
        result = run_python(sandbox, "while True: pass", timeout=60)
    finally:
        sandbox.kill()

    assert time.monotonic() - started < 20
    assert not result.timed_out
    assert result.exit_code not in (0, None)
    assert "CPU time limit of 1 s reached" in result.stderr


def test_memory_limit_stops_a_large_allocation(root: Path, isolation: str) -> None:
    sandbox = make_provider(root, isolation, memory_mb=512).create(job_id="mem", timeout=60)
    try:
        result = run_python(sandbox, "block = bytearray(2 * 1024 ** 3)")
    finally:
        sandbox.kill()

    assert result.exit_code == 1
    assert "MemoryError" in result.stderr


def test_file_size_limit_stops_a_large_file(root: Path, isolation: str) -> None:
    sandbox = make_provider(root, isolation, file_size_mb=1).create(job_id="fsize", timeout=60)
    try:
        result = run_python(sandbox, "open('big.bin', 'wb').write(b'x' * (2 * 1024 * 1024))")
        size = (sandbox.workdir / "big.bin").stat().st_size
    finally:
        sandbox.kill()

    assert result.exit_code not in (0, None)
    assert "File too large" in result.stderr
    assert size <= 1024 * 1024


def test_training_libraries_work_under_the_default_memory_limit(sandbox: LocalSandbox) -> None:
    code = """
import joblib, matplotlib.pyplot as plt, numpy as np, pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

rng = np.random.default_rng(0)
frame = pd.DataFrame(rng.normal(size=(300, 4)), columns=list("abcd"))
target = (frame.a + frame.b > 0).astype(int)
model = LogisticRegression().fit(frame, target)
RandomForestClassifier(n_estimators=20, n_jobs=2).fit(frame, target)
joblib.dump(model, "model.joblib")
plt.plot([1, 2, 3])
plt.savefig("plot.png")
print("score", round(model.score(frame, target), 2))
"""
    result = run_python(sandbox, code, timeout=120)

    assert result.ok, result.stderr
    assert result.stdout.startswith("score")
    assert sandbox.read_file("plot.png").startswith(b"\x89PNG")
    assert len(sandbox.read_file("model.joblib")) > 100


# bubblewrap isolation


def test_bubblewrap_hides_the_host_filesystem(
    root: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    database = tmp_path_factory.mktemp("service") / "trainbot.db"
    database.write_text("jobs")
    sandbox = make_provider(root, "bwrap").create(job_id="fs", timeout=60)
    probes = {
        "database": ["open", str(database)],
        "project": ["listdir", str(PROJECT)],
        "cwd": ["listdir", os.getcwd()],
        "sandboxes": ["listdir", str(root)],
        "shadow": ["open", "/etc/shadow"],
    }
    code = f"""
import json, os
outcomes = {{}}
for name, (kind, path) in {probes!r}.items():
    try:
        open(path).read() if kind == "open" else os.listdir(path)
        outcomes[name] = "visible"
    except OSError as error:
        outcomes[name] = type(error).__name__
outcomes["uid"] = os.getuid()
print(json.dumps(outcomes))
"""
    try:
        result = run_python(sandbox, code)
    finally:
        sandbox.kill()

    outcomes = json.loads(result.stdout)
    assert outcomes["database"] == "FileNotFoundError"
    assert outcomes["project"] == "FileNotFoundError"
    assert outcomes["cwd"] == "FileNotFoundError"
    assert outcomes["sandboxes"] == "FileNotFoundError"
    assert outcomes["shadow"] == "FileNotFoundError"
    assert outcomes["uid"] != 0
    assert sandbox.isolation.startswith("bubblewrap: private filesystem")


@pytest.mark.parametrize("network", [False, True])
def test_bubblewrap_network_only_when_asked(root: Path, network: bool) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    sandbox = make_provider(root, "bwrap").create(job_id="net", timeout=60)
    code = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).close()
    print("connected")
except OSError as error:
    print("blocked", type(error).__name__)
"""
    try:
        result = run_python(sandbox, code, network=network)
    finally:
        sandbox.kill()
        listener.close()

    assert result.stdout.startswith("connected" if network else "blocked")


# Servers


def test_server_answers_on_its_url_and_kill_stops_it(sandbox: LocalSandbox) -> None:
    url = start_hello_server(sandbox)

    assert url.startswith("http://127.0.0.1:")
    assert sandbox.server_exited() is None
    sandbox.kill()
    assert wait_until(lambda: not answers(url), timeout=10)
    assert not sandbox.directory.exists()
    sandbox.kill()  # idempotent
    with pytest.raises(SandboxError):
        sandbox.run(["python", "-c", "pass"], timeout=5)


def test_crashing_server_reports_its_exit_and_stderr(sandbox: LocalSandbox) -> None:
    sandbox.write_file("app.py", "import sys\nprint('no model file', file=sys.stderr)\nsys.exit(4)")
    sandbox.start_server(["python", "app.py"], port=sandbox.app_port())

    assert wait_until(lambda: sandbox.server_exited() is not None)
    result = sandbox.server_exited()
    assert result is not None
    assert result.exit_code == 4
    assert "no model file" in result.stderr


def test_server_outlives_the_thread_that_started_it(sandbox: LocalSandbox) -> None:
    # A child's parent-death signal fires when the thread that forked it exits.
    urls: list[str] = []

    def start() -> None:
        urls.append(start_hello_server(sandbox))
        time.sleep(0.5)

    worker = threading.Thread(target=start)
    worker.start()
    worker.join()
    time.sleep(1.0)

    assert answers(urls[0])
    assert sandbox.server_exited() is None


def test_provider_in_another_process_kills_a_sandbox_by_id(
    root: Path, isolation: str, sandbox: LocalSandbox
) -> None:
    url = start_hello_server(sandbox)
    other = make_provider(root, isolation)  # knows the sandbox only by its directory

    assert other.kill(sandbox.id)
    assert wait_until(lambda: not answers(url), timeout=10)
    assert wait_until(lambda: sandbox.server_exited() is not None, timeout=10)
    assert not sandbox.directory.exists()
    assert not other.kill(sandbox.id)
    assert not other.kill("../sandboxes")
    assert not other.kill("local-nothere-0000abcd")


def test_garbage_collected_sandbox_cleans_up(provider: LocalSandboxProvider) -> None:
    sandbox = provider.create(job_id="gc", timeout=60)
    url = start_hello_server(sandbox)
    directory = sandbox.directory
    del sandbox
    gc.collect()

    assert wait_until(lambda: not answers(url), timeout=10)
    assert not directory.exists()


def nosy_server(targets: dict[str, object]) -> str:
    """An app that, on each GET, dials everything in `targets` and answers what it reached."""
    return (
        f"TARGETS = {targets!r}\n"
        + DIAL_ALL
        + """
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Nosy(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(dial_all()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Nosy).serve_forever()
"""
    )


def test_the_app_is_reachable_but_dials_nothing_under_bubblewrap(
    root: Path, isolation: str
) -> None:
    provider = make_provider(root, isolation)
    sandbox = provider.create(job_id="nosy-app", timeout=60)
    try:
        with bait() as listeners:
            port = sandbox.app_port()
            sandbox.write_file("app.py", nosy_server(listeners.targets(skip_port=port)))
            sandbox.start_server(["python", "app.py"], port=port)
            url = sandbox.url_for(port)
            assert wait_until(lambda: _dials(url) is not None), sandbox.server_exited()
            found = _dials(url)
            accepted = list(listeners.accepted)
    finally:
        sandbox.kill()

    assert found is not None
    reached = [label for label, outcome in found["reached"].items() if outcome == "connected"]
    if isolation == "bwrap":
        assert reached == [], found
        assert accepted == []
        assert found["interfaces"] == ["lo"]
        assert provider.isolates_network
        assert "app reached only through its forwarded port" in sandbox.isolation
    else:  # the weaker isolation says what it is, and is not counted as isolating
        assert not provider.isolates_network
        assert "test's listener on loopback" in reached
        assert "network open" in sandbox.isolation
    assert provider.max_lifetime is None


def _dials(url: str) -> dict[str, Any] | None:
    try:
        with _no_proxy.open(url, timeout=60) as response:
            return dict(json.loads(response.read()))
    except (OSError, urllib.error.URLError, ValueError):
        return None


ECHO_SERVER = """
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Echo(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 would refuse the test's burst itself
    daemon_threads = True

server = Server(("0.0.0.0", int(os.environ["PORT"])), Echo)
print("serving", flush=True)
server.serve_forever()
"""


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _threads() -> set[str]:
    """Live threads but the one that starts every sandbox process (it lives for good)."""
    return {
        f"{thread.name} {thread.ident}"
        for thread in threading.enumerate()
        if thread.name != "sandbox-spawner"
    }


def test_the_forwarded_port_carries_many_connections_at_once_and_closes_cleanly(
    provider: LocalSandboxProvider,
) -> None:
    threads_before = _threads()
    fds_before = _open_fds()
    sandbox = provider.create(job_id="echo", timeout=60)
    sandbox.write_file("app.py", ECHO_SERVER)
    port = sandbox.app_port()
    sandbox.start_server(["python", "app.py"], port=port)
    url = sandbox.url_for(port)

    def echo(size: int) -> bool:
        body = os.urandom(size)
        request = urllib.request.Request(url, data=body, method="POST")
        with _no_proxy.open(request, timeout=60) as response:
            return bool(response.read() == body)

    def up() -> bool:
        try:
            return echo(10)
        except OSError:
            return False

    try:
        assert wait_until(up), sandbox.server_exited()
        serving = len(_open_fds())
        # More at once than the forwarder relays at a time (128): the rest wait their turn.
        with ThreadPoolExecutor(max_workers=200) as pool:
            sizes = [100_000] * 600 + [8 * 1024 * 1024] * 2
            assert all(pool.map(echo, sizes))
        # Every finished connection is let go while the app keeps serving.
        assert wait_until(lambda: len(_open_fds()) <= serving, 10), len(_open_fds()) - serving
    finally:
        sandbox.kill()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert wait_until(lambda: _threads() <= threads_before, 10), _threads() - threads_before
    gc.collect()
    leaked = {fd for fd in _open_fds() - fds_before if os.path.exists(f"/proc/self/fd/{fd}")}
    assert leaked == set(), [os.readlink(f"/proc/self/fd/{fd}") for fd in leaked]


def test_server_dies_with_the_service_process(root: Path, isolation: str) -> None:
    script = f"""
import sys, time
from pathlib import Path
from pipeline.sandbox.local import LocalSandboxProvider
provider = LocalSandboxProvider(Path({str(root)!r}), memory_mb=4096, cpu_seconds=60,
                                file_size_mb=64, isolation={isolation!r})
sandbox = provider.create(job_id="parent", timeout=60)
sandbox.write_file("app.py", {HELLO_SERVER!r})
port = sandbox.app_port()
sandbox.start_server(["python", "app.py"], port=port, env={{"HOST": "127.0.0.1"}})
print(sandbox.url_for(port), flush=True)
time.sleep(300)
"""
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    service = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert service.stdout is not None
        url = service.stdout.readline().strip()
        assert wait_until(lambda: answers(url))
        service.send_signal(signal.SIGKILL)
        service.wait()
        assert wait_until(lambda: not answers(url), timeout=10)
    finally:
        service.kill()
        service.wait()
        if service.stdout is not None:
            service.stdout.close()


# Choosing the isolation


def test_isolation_descriptions(root: Path) -> None:
    process = make_provider(root, "process", memory_mb=4096, cpu_seconds=900, file_size_mb=512)

    assert process.isolation == (
        "process limits only (bubblewrap disabled): scrubbed environment, own working "
        "directory, host filesystem visible, network open, CPU 900 s, memory 4096 MB, "
        "files 512 MB"
    )
    bwrap = make_provider(root, "bwrap", memory_mb=4096, cpu_seconds=900, file_size_mb=512)
    assert bwrap.isolation == (
        "bubblewrap: private filesystem, no network for training, app reached only through "
        "its forwarded port (it can dial nothing), CPU 900 s, memory 4096 MB, files 512 MB"
    )
    assert make_provider(root, "auto").mode == "bwrap"


def test_without_bubblewrap_auto_falls_back_and_bwrap_refuses(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap to be found

    fallback = make_provider(root, "auto")
    assert fallback.mode == "process"
    assert fallback.isolation.startswith("process limits only (bubblewrap not available)")
    with pytest.raises(SandboxError):
        make_provider(root, "bwrap")
    with pytest.raises(ValueError):
        make_provider(root, "docker")


def test_sandbox_ids_name_the_job(provider: LocalSandboxProvider, root: Path) -> None:
    sandbox = provider.create(job_id="3F2A9C1E-5B7D-4C1A", timeout=60)
    try:
        assert sandbox.id.startswith("local-3f2a9c1e-")
        assert sandbox.directory == root / sandbox.id
        assert sandbox.url_for(8123) == "http://127.0.0.1:8123"
        before = sandbox.deadline
        sandbox.extend(3600)
        assert sandbox.deadline > before
    finally:
        sandbox.kill()
