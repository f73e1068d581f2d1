"""`trainbot` as a person runs it: a real process, a real live app, Ctrl-C to stop."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sklearn import datasets

from tests.support.cli import CliRun, trainbot
from tests.support.cli import cli_env as cli_env_fixture
from tests.support.messy import write_messy_csv

# The fixture by name, so pytest finds it in this module.
cli_env = cli_env_fixture

BUILTINS = {
    "iris": datasets.load_iris,
    "wine": datasets.load_wine,
    "breast_cancer": datasets.load_breast_cancer,
    "digits": datasets.load_digits,
    "diabetes": datasets.load_diabetes,
}


@pytest.mark.parametrize("name", list(BUILTINS))
def test_run_each_builtin_reaches_a_live_app_that_predicts(
    name: str, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    run = CliRun(["--name", f"demo-{name}", "--dataset", name], tmp_path, cli_env)
    try:
        url = run.live_url()
        loaded = BUILTINS[name](as_frame=True)
        rows = loaded.data.iloc[:20].to_dict(orient="records")
        answer = httpx.post(url + "predict", json={"rows": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        predictions = answer.json()["predictions"]
        if name == "diabetes":
            truth = loaded.target.iloc[:20].to_numpy()
            assert all(isinstance(p, float) for p in predictions)
            assert sum(abs(p - t) for p, t in zip(predictions, truth, strict=True)) / 20 < 60
        else:
            names = getattr(loaded, "target_names", None)
            truth = [str(names[t]) if name != "digits" else str(t) for t in loaded.target.iloc[:20]]
            right = sum(str(p) == t for p, t in zip(predictions, truth, strict=True))
            assert right >= 18, (predictions, truth)
        assert run.interrupt() == 0
        assert "Stopped the live app" in run.output()
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    status = trainbot(tmp_path, cli_env, "jobs")
    assert f"demo-{name}" in status.stdout and "expired" in status.stdout


def test_messy_csv_trains_and_serves_without_hand_edits(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    csv = write_messy_csv(tmp_path / "customers.csv")
    run = CliRun(
        [
            "--name",
            "churn",
            "--dataset",
            str(csv),
            "--target",
            " churned? ",
            "--goal",
            "who churns",
        ],
        tmp_path,
        cli_env,
    )
    try:
        url = run.live_url()
        schema = httpx.get(url + "schema").json()
        metrics = schema["metrics"]  # 85% "No": the headline metric must not flatter the majority
        assert metrics["metric"] == "balanced_accuracy"
        assert metrics["score"] > metrics["baseline"]
        assert "Customer ID" in {d["name"] for d in schema["dropped"]}
        features = {f["name"]: f["type"] for f in schema["features"]}
        assert features["Signup Date"] == "date"
        assert features["Plan Type"] == "category"
        row = {
            "Customer ID": "CUST-99999",
            "Tenure (months)": 3,
            "Monthly Income ($)": None,
            "Plan Type": "Basic",
            "# Support Calls": 6,
            "Signup Date": "2023-02-01",
        }
        answer = httpx.post(url + "predict", json={"rows": [row]})
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"][0] in {"Yes", "No"}
        assert run.interrupt() == 0
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    out = run.output()
    assert "baseline" in out


def test_status_logs_jobs_and_cancel_commands(tmp_path: Path, cli_env: dict[str, str]) -> None:
    empty = trainbot(tmp_path, cli_env, "jobs")
    assert empty.returncode == 0 and "No jobs yet" in empty.stdout

    failing = trainbot(
        tmp_path, cli_env, "run", "--name", "bad", "--dataset", "missing.csv", "--target", "y"
    )
    assert failing.returncode == 1
    assert "missing.csv" in failing.stderr and "Traceback" not in failing.stderr + failing.stdout
    job_id = re.search(r"Job ([0-9a-f]{8}) queued", failing.stdout).group(1)  # type: ignore[union-attr]

    status = trainbot(tmp_path, cli_env, "status", job_id)
    assert status.returncode == 0
    assert "failed" in status.stdout and "missing.csv" in status.stdout

    logs = trainbot(tmp_path, cli_env, "logs", job_id)
    assert "[dataset]" in logs.stdout and "failed" in logs.stdout

    cancel = trainbot(tmp_path, cli_env, "cancel", job_id)
    assert cancel.returncode == 2 and "nothing to cancel" in cancel.stderr

    unknown = trainbot(tmp_path, cli_env, "status", "deadbeef")
    assert unknown.returncode == 2 and "no job has the id deadbeef" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def test_cancel_from_another_process_stops_a_live_app(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    run = CliRun(["--name", "x", "--dataset", "iris"], tmp_path, cli_env)
    try:
        url = run.live_url()
        job_id = re.search(r"Job ([0-9a-f]{8}) queued", run.output()).group(1)  # type: ignore[union-attr]
        assert trainbot(tmp_path, cli_env, "cancel", job_id).returncode == 0
        with pytest.raises(httpx.HTTPError):
            httpx.get(url + "health", timeout=2)
        assert run.proc.wait(30) == 0  # the run command notices and exits
    finally:
        if run.proc.poll() is None:
            run.proc.kill()


def test_serve_answers_health_and_stops_on_sigterm(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """`trainbot serve` as the Procfile runs it: env settings in, HTTP out, SIGTERM to stop."""
    from tests.fakes.slack_api import FakeSlack
    from tests.support.slack_payloads import SIGNING_SECRET, SlackSender

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with FakeSlack() as fake:
        env = {
            **cli_env,
            "SLACK_BOT_TOKEN": fake.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.api_url,
            "PORT": str(port),
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/healthz", timeout=1).json() == {"status": "ok"}:
                        break
                except httpx.HTTPError:
                    pass
                assert server.poll() is None and time.monotonic() < deadline, "serve never answered"
                time.sleep(0.2)
            answer = SlackSender(base).command("help")
            assert answer.status_code == 200 and "/train status" in answer.text
            server.send_signal(signal.SIGTERM)
            assert server.wait(30) == 0
        finally:
            if server.poll() is None:
                server.kill()


@pytest.mark.parametrize(
    ("link", "reason"),
    [
        ("http://xn--zz/x.csv", "xn--zz is not a valid internationalised (xn--) name"),
        ("https://xn--a.example/x.csv", "xn--a is not a valid internationalised (xn--) name"),
    ],
)
def test_run_with_a_malformed_link_fails_with_a_plain_reason(
    tmp_path: Path, cli_env: dict[str, str], link: str, reason: str
) -> None:
    started = time.monotonic()
    failed = trainbot(tmp_path, cli_env, "run", "--name", "bad", "--dataset", link, "--target", "y")
    assert time.monotonic() - started < 60
    assert failed.returncode == 1
    output = failed.stdout + failed.stderr
    assert f"{link} is not a valid link: {reason}" in failed.stderr, output
    assert "Traceback" not in output and "internal error" not in output, output
