"""`trainbot serve` as a real process (SQLite in a fresh directory, FakeSlack for the Web
API), and what tests read from it: its log, its memory, its health."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.fakes.slack_api import FakeSlack
from tests.support.slack_payloads import SIGNING_SECRET, SlackSender

API_TOKEN = "status-api-secret"
MB = 1024 * 1024


@dataclass
class Served:
    proc: subprocess.Popen[str]
    base: str
    port: int
    slack: FakeSlack
    lines: list[str] = field(default_factory=list)

    def log(self) -> str:
        return "\n".join(self.lines)

    def memory(self, field: str = "VmRSS") -> int:
        """The server's resident memory now (VmRSS) or at its peak (VmHWM), in bytes."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(rf"^{field}:\s+(\d+) kB$", status, re.MULTILINE)
        assert match, status
        return int(match.group(1)) * 1024

    def reset_peak_memory(self) -> None:
        # proc(5), /proc/pid/clear_refs: "5" resets the peak resident set size (VmHWM) to
        # the current one, so the next reading is the peak of what happens in between.
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        assert self.memory("VmHWM") <= self.memory() + MB

    def assert_healthy(self) -> None:
        assert self.proc.poll() is None, self.log()
        assert httpx.get(self.base + "/healthz", timeout=5).json() == {"status": "ok"}
        answer = SlackSender(self.base).command("help")
        assert answer.status_code == 200 and "/train status" in answer.text

    def logged_since(self, start: int, pattern: str, timeout: float = 3) -> list[str]:
        """The log lines after line `start`, once one matches `pattern` (or after `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(re.search(pattern, line) for line in self.lines[start:]):
                break
            time.sleep(0.05)
        time.sleep(0.2)  # anything logged right after (a traceback) arrives too
        return self.lines[start:]


@contextmanager
def serve_process(cwd: Path) -> Iterator[Served]:
    """Runs `python -m bot serve` until the block ends; its log must hold no traceback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINBOT_")}
    env.pop("DATABASE_URL", None)  # SQLite in the working directory, as a person runs it
    with FakeSlack() as fake:
        env |= {
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            "SLACK_BOT_TOKEN": fake.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": fake.api_url,
            "TRAINBOT_API_TOKEN": API_TOKEN,
            "PORT": str(port),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        server = Served(proc, f"http://127.0.0.1:{port}", port, fake)

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                server.lines.append(line.rstrip("\n"))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(server.base + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, server.log()
                assert time.monotonic() < deadline, "serve never answered:\n" + server.log()
                time.sleep(0.2)
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
            reader.join(5)
    assert "Traceback" not in server.log(), server.log()
