"""`trainbot run --ttl` against the lifetime cap of the configured sandbox provider."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def trainbot(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINBOT_", "E2B_"))}
    base.pop("DATABASE_URL", None)  # the default: a SQLite file in the working directory
    base["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_ttl_past_the_e2b_plans_cap_is_refused_before_any_job(tmp_path: Path) -> None:
    # No sandbox is made, so no E2B server is needed: the check comes first.
    e2b = {"TRAINBOT_SANDBOX": "e2b", "E2B_API_KEY": "e2b_test_key"}
    refused = trainbot(
        tmp_path,
        *("run", "--name", "long", "--dataset", "iris", "--ttl", "7200"),
        TRAINBOT_E2B_MAX_LIFETIME="3600",
        **e2b,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "--ttl 7200 is too long" in refused.stderr
    assert "at most 3600 seconds (TRAINBOT_E2B_MAX_LIFETIME)" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
    assert "No jobs yet" in trainbot(tmp_path, "jobs").stdout
