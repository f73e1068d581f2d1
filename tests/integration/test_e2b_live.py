"""The E2B provider against the real E2B service. Runs only with E2B_API_KEY set (it costs a
sandbox-minute or two): `E2B_API_KEY=e2b_... pytest -m e2b_live`."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from pipeline.sandbox.e2b import E2BSandboxProvider
from tests.support.sandbox_code import HELLO_SERVER

pytestmark = [
    pytest.mark.e2b_live,
    pytest.mark.skipif(
        not os.environ.get("E2B_API_KEY"),
        reason="E2B_API_KEY is not set; this test talks to the real E2B service",
    ),
]

# Outbound traffic: closed for the code unless a command asks for the network.
CONNECT_OUT = [
    "python",
    "-c",
    "import socket; socket.create_connection(('1.1.1.1', 443), timeout=5).close()",
]


# A child that would outlive its command if only the command's own process were killed.
SPAWNS_A_CHILD = [
    "python",
    "-c",
    "import subprocess, time; subprocess.Popen(['sleep', '301']); print('up', flush=True); "
    "time.sleep(120)",
]


def test_a_real_sandbox_runs_code_and_serves_an_app(tmp_path: Path) -> None:
    provider = E2BSandboxProvider(api_key=os.environ["E2B_API_KEY"])
    sandbox = provider.create(job_id="trainbot-live-test", timeout=120)
    try:
        sandbox.write_file("hello.txt", "hi")
        assert sandbox.read_file("hello.txt") == b"hi"
        with pytest.raises(FileNotFoundError):
            sandbox.read_file("missing.txt")
        big = tmp_path / "big.bin"
        big.write_bytes(os.urandom(8 * 1024 * 1024))
        sandbox.write_file_from("big.bin", big)
        sandbox.read_file_to("big.bin", tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
        with pytest.raises(FileNotFoundError):
            sandbox.read_file_to("missing.txt", tmp_path / "missing.txt")

        stopped = sandbox.run(SPAWNS_A_CHILD, timeout=3)
        assert stopped.timed_out
        assert sandbox.run(["pgrep", "-f", "sleep 301"], timeout=30).exit_code == 1

        lines: list[str] = []
        result = sandbox.run(["python", "-c", "print(1)"], timeout=60, on_output=lines.append)
        assert (result.exit_code, result.stdout, lines) == (0, "1", ["1"])
        failed = sandbox.run(["python", "-c", "import sys; sys.exit(3)"], timeout=60)
        assert failed.exit_code == 3
        assert not sandbox.run(CONNECT_OUT, timeout=60).ok
        assert sandbox.run(CONNECT_OUT, timeout=60, network=True).ok

        sandbox.write_file("server.py", HELLO_SERVER)
        sandbox.start_server(["python", "server.py"], port=sandbox.app_port())
        url = sandbox.url_for(sandbox.app_port())
        assert url.startswith("https://")
        deadline = time.monotonic() + 60
        body = b""
        while time.monotonic() < deadline and body != b"hello":
            assert sandbox.server_exited() is None
            try:
                body = httpx.get(url, timeout=10).content
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert body == b"hello"
        ends = sandbox.extend(300)
        assert timedelta(seconds=240) < ends - datetime.now(UTC) <= timedelta(seconds=300)
    finally:
        sandbox.kill()
    assert provider.kill(sandbox.id) is False
