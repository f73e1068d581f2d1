"""`trainbot serve` and `trainbot socket` start from the environment, as deployed, and log no
Bolt warning: in particular not "As you gave `client` as well, `token` will be unused."
(slack_bolt/logger/messages.py), which Bolt logs when it finds SLACK_BOT_TOKEN in the
environment besides the client it was given (slack_bolt/app/app.py, App.__init__)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_socket import FakeSocketMode
from tests.support.slack_payloads import SIGNING_SECRET

REPO = Path(__file__).resolve().parents[2]
BOLT_TOKEN_WARNING = warning_client_prioritized_and_token_skipped()


def bot_env(fake: FakeSlack, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "TRAINBOT_")) and k != "DATABASE_URL"
    }
    return env | {
        "PYTHONPATH": str(REPO),
        "SLACK_BOT_TOKEN": fake.token,
        "SLACK_API_URL": fake.api_url,
        **extra,
    }


def start_and_stop(args: list[str], env: dict[str, str], cwd: Path, ready: str) -> str:
    """Runs `trainbot ARGS` until it prints `ready`, stops it with SIGTERM; all it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any(ready in line for line in list(lines)):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, f"never printed {ready!r}: {''.join(lines)}"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    reader.join(5)
    return "".join(lines)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def bolt_warnings(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("WARNING slack_bolt")]


def test_serve_starts_without_the_token_warning(tmp_path: Path) -> None:
    with FakeSlack() as fake:
        env = bot_env(fake, SLACK_SIGNING_SECRET=SIGNING_SECRET, PORT=str(free_port()))
        output = start_and_stop(
            ["serve", "--host", "127.0.0.1"], env, tmp_path, ready="TrainBot listening"
        )
    assert BOLT_TOKEN_WARNING not in output
    assert bolt_warnings(output) == []


def test_socket_starts_without_the_token_warning(tmp_path: Path) -> None:
    with FakeSocketMode() as sockets, FakeSlack(socket_mode=sockets.new_url) as fake:
        env = bot_env(fake, SLACK_APP_TOKEN=fake.app_token)
        output = start_and_stop(
            ["socket"], env, tmp_path, ready="TrainBot connected over Socket Mode"
        )
        assert fake.calls_to("apps.connections.open"), output
    assert BOLT_TOKEN_WARNING not in output
    assert bolt_warnings(output) == []
