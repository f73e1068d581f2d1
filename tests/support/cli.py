"""`trainbot` as a person runs it, for the CLI tests: a real process, its output collected."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

URL_LINE = re.compile(r"Live app: (http://\S+)")


class CliRun:
    """`trainbot run` in the background, its output collected line by line."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "run", *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def live_url(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines:
                if match := URL_LINE.search(line):
                    return match.group(1)
            if self.proc.poll() is not None:
                self._reader.join(5)
                raise AssertionError("trainbot run exited:\n" + "\n".join(self.lines))
            time.sleep(0.1)
        raise AssertionError("no live URL:\n" + "\n".join(self.lines))

    def interrupt(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(30)

    def output(self) -> str:
        self._reader.join(5)
        return "\n".join(self.lines)


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINBOT_")}
    env.pop("DATABASE_URL", None)  # the default: a SQLite file in the working directory
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def trainbot(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
