"""Run the template train.py / app.py for real: a task directory, a training run, a live app."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.codegen.base import ColumnInfo, TaskSpec, TaskType
from pipeline.codegen.contract import DATA_FILE, TASK_FILE
from pipeline.codegen.template import TemplateGenerator

TRAIN_TIMEOUT = 180.0
APP_START_TIMEOUT = 60.0


def rough_kind(values: pd.Series) -> str:
    """A rough column kind for task.json; train.py does its own analysis anyway."""
    if pd.api.types.is_bool_dtype(values):
        return "bool"
    if pd.api.types.is_numeric_dtype(values):
        return "number"
    if values.nunique() == len(values):
        return "id"
    return "category"


def task_spec(frame: pd.DataFrame, *, target: str, task: str, name: str = "test") -> TaskSpec:
    columns = [
        ColumnInfo(
            name=str(col),
            dtype=str(frame[col].dtype),
            kind=rough_kind(frame[col]),
            missing=int(frame[col].isna().sum()),
            unique=int(frame[col].nunique()),
            examples=[_plain(v) for v in frame[col].dropna().head(3)],
        )
        for col in frame.columns
    ]
    classes = (
        sorted(_plain(v) for v in frame[target].dropna().unique())
        if task == "classification"
        else []
    )
    return TaskSpec(
        name=name,
        goal=f"predict {target}",
        task=TaskType(task),
        target=target,
        data_file=DATA_FILE,
        columns=columns,
        n_rows=len(frame),
        sample_rows=json.loads(frame.head(5).to_json(orient="records")),
        classes=classes,
    )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def prepare_workdir(workdir: Path, frame: pd.DataFrame, *, target: str, task: str) -> TaskSpec:
    """Write task.json, data.csv and the generated scripts, as the pipeline does."""
    workdir.mkdir(parents=True, exist_ok=True)
    spec = task_spec(frame, target=target, task=task)
    (workdir / TASK_FILE).write_text(json.dumps(spec.to_json_dict(), default=str), encoding="utf-8")
    frame.to_csv(workdir / DATA_FILE, index=False)
    for file_name, source in TemplateGenerator().generate(spec, []).files.items():
        (workdir / file_name).write_text(source, encoding="utf-8")
    return spec


def run_train(workdir: Path, *, timeout: float = TRAIN_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "train.py"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(),
    )


def train_ok(workdir: Path) -> subprocess.CompletedProcess[str]:
    result = run_train(workdir)
    assert result.returncode == 0, f"train.py failed:\n{result.stdout}\n{result.stderr}"
    return result


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


@dataclass
class LiveApp:
    url: str
    process: subprocess.Popen[str]

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> Response:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        if body is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return Response(resp.status, resp.read(), resp.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as err:
            return Response(err.code, err.read(), err.headers.get("Content-Type", ""))

    def get(self, path: str) -> Response:
        return self.request("GET", path)

    def post_json(self, path: str, payload: Any) -> Response:
        return self.request("POST", path, body=json.dumps(payload).encode("utf-8"))

    def predict(self, rows: Any) -> Response:
        return self.post_json("/predict", {"rows": rows})

    def raw(self, data: bytes, *, timeout: float = 10.0, keep_open: bool = True) -> RawResponse:
        """Send bytes as they are (malformed requests no client library will write).

        keep_open leaves our side of the socket open, as a client still sending would.
        """
        return raw_exchange(self.url, data, timeout=timeout, keep_open=keep_open)

    @property
    def rss_kb(self) -> tuple[int, int]:
        """The app process's (current, peak) resident memory in kB, from /proc."""
        fields = dict(
            line.split(":", 1)
            for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        )
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


@dataclass(frozen=True)
class RawResponse:
    """What came back on a raw socket: status 0 means the connection closed without a word."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float

    def json(self) -> Any:
        return json.loads(self.body)


def raw_exchange(url: str, data: bytes, *, timeout: float, keep_open: bool) -> RawResponse:
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    received = b""
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if not keep_open:
                sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # the server refused and closed before reading everything we sent
    seconds = time.monotonic() - started
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    if not lines[0].startswith("HTTP/"):
        return RawResponse(0, {}, received, seconds)
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return RawResponse(int(lines[0].split()[1]), headers, body, seconds)


@contextmanager
def live_app(workdir: Path) -> Iterator[LiveApp]:
    """Start app.py on a free loopback port, wait for /health, stop it afterwards."""
    port = free_port()
    log = open(workdir / "app.log", "w")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen(
        [sys.executable, "app.py"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=_clean_env(HOST="127.0.0.1", PORT=str(port)),
    )
    app = LiveApp(f"http://127.0.0.1:{port}", process)
    try:
        _wait_healthy(app, workdir)
        yield app
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_healthy(app: LiveApp, workdir: Path) -> None:
    deadline = time.monotonic() + APP_START_TIMEOUT
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise AssertionError(f"app.py exited early:\n{(workdir / 'app.log').read_text()}")
        try:
            if app.get("/health").status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(
        f"app.py not healthy in {APP_START_TIMEOUT}s:\n{(workdir / 'app.log').read_text()}"
    )


def messy_frame(n_rows: int = 400, seed: int = 7) -> pd.DataFrame:
    """Customer churn with the usual mess: odd headers, gaps, ids, dates, text, imbalance.

    About 15% of customers churn; support calls, the basic plan and low income drive it.
    """
    rng = np.random.default_rng(seed)
    calls = rng.poisson(2.5, n_rows)
    plan = rng.choice(["Basic", "Plus", "Premium"], n_rows, p=[0.5, 0.3, 0.2])
    income = rng.normal(6000, 1800, n_rows).round(2)
    signup = pd.Timestamp("2020-01-01") + pd.to_timedelta(rng.integers(0, 1400, n_rows), unit="D")
    risk = 0.9 * calls + 1.5 * (plan == "Basic") - income / 1500 + rng.normal(0, 0.8, n_rows)
    churned = np.where(risk > np.quantile(risk, 0.85), "Yes", "No")
    frame = pd.DataFrame(
        {
            "Customer ID": [f"C-{i:05d}" for i in rng.permutation(n_rows)],
            "Account No": 5000 + rng.permutation(n_rows),
            "Signup Date": signup.strftime("%Y-%m-%d"),
            "Monthly Income ($)": income,
            "  Plan Type ": plan,
            "Support Calls #": calls,
            "Is Student": rng.random(n_rows) < 0.2,
            "Region": rng.choice(["North", "South", "East", "West"], n_rows),
            "Notes": [
                f"customer said {w} on call {i}" for i, w in enumerate(rng.choice(WORDS, n_rows))
            ],
            "Churned?": churned,
        }
    )
    frame.loc[rng.random(n_rows) < 0.08, "Monthly Income ($)"] = np.nan
    frame.loc[rng.random(n_rows) < 0.05, "  Plan Type "] = None
    frame.loc[rng.random(n_rows) < 0.05, "Region"] = None
    frame.loc[rng.random(n_rows) < 0.03, "Signup Date"] = None
    return frame


WORDS = ["thanks", "too expensive", "slow app", "great support", "billing issue", "moving away"]


def builtin_frame(name: str) -> pd.DataFrame:
    """A scikit-learn toy data set as one frame with a "target" column."""
    from sklearn import datasets

    return getattr(datasets, f"load_{name}")(as_frame=True).frame
