"""Hostile CSV files through `trainbot run`: a plain reason, quickly, and nothing raw.

Each bad file fails in the dataset stage, so these runs never reach a sandbox; the one
file that is only slightly ragged trains on, and its warning is on the console first.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.support.cli import CliRun, trainbot
from tests.support.cli import cli_env as cli_env_fixture

# The fixture by name, so pytest finds it in this module.
cli_env = cli_env_fixture

# A refusal names a file, a column and a few rows: a few hundred characters, never the file.
REASON_BOUND = 1_200


def data_rows(n: int) -> list[str]:
    return [f"{i},{['red', 'blue'][i % 2]},{'ab'[i % 3 == 0]}" for i in range(n)]


def long_value_file(path: Path) -> Path:
    rows = data_rows(60)
    rows[4] = f"4,{'r' * 200_000},a"
    path.write_text("size,colour,label\n" + "\n".join(rows) + "\n")
    return path


def unclosed_header_file(path: Path) -> Path:
    path.write_text('"size,colour,label\n' + "\n".join(data_rows(20_000)) + "\n")  # ~250 KB
    return path


def ragged_file(path: Path) -> Path:
    rows = data_rows(200)
    for i in range(10, 200, 10):
        rows[i] = f"{i},red,a,EXTRA"
    path.write_text("size,colour,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (
            long_value_file,
            "a value in column 'colour', row 6 is longer than 131,072 characters",
        ),
        (unclosed_header_file, "the header row opens a quote that is not closed on that line"),
        (ragged_file, "19 of 200 rows do not have the 3 values the header has (rows 12, 22"),
    ],
    ids=["long-value", "unclosed-header", "ragged"],
)
def test_a_bad_csv_fails_with_a_short_plain_reason(
    tmp_path: Path,
    cli_env: dict[str, str],  # noqa: F811 - the fixture
    make: object,
    reason: str,
) -> None:
    csv_path = make(tmp_path / "bad.csv")  # type: ignore[operator]
    started = time.monotonic()
    failed = trainbot(
        tmp_path, cli_env, "run", "--name", "bad", "--dataset", str(csv_path), "--target", "label"
    )
    assert time.monotonic() - started < 60
    output = failed.stdout + failed.stderr
    assert failed.returncode == 1, output[:3000]
    assert reason in output, output[:3000]
    assert "Traceback" not in output and "internal error" not in output, output[:3000]
    assert "Warning" not in output, "no raw pandas warning reaches the console"
    assert len(output) < 4 * REASON_BOUND, output[:3000]

    job_id = re.search(r"Job ([0-9a-f]{8}) queued", failed.stdout).group(1)  # type: ignore[union-attr]
    status = trainbot(tmp_path, cli_env, "status", job_id)
    assert status.returncode == 0 and reason in status.stdout
    assert len(status.stdout) < 4 * REASON_BOUND, status.stdout[:3000]


def test_a_slightly_ragged_csv_trains_with_a_warning(
    tmp_path: Path,
    cli_env: dict[str, str],  # noqa: F811 - the fixture
) -> None:
    rows = data_rows(400)
    rows[0] = "0,red,a,EXTRA"  # first data row: pandas used to warn on stderr and shift it
    rows[50] = "5,stray"  # "stray" would have become a colour
    csv_path = tmp_path / "ragged.csv"
    csv_path.write_text("size,colour,label\n" + "\n".join(rows) + "\n")
    run = CliRun(
        ["--name", "r", "--dataset", str(csv_path), "--target", "label"], tmp_path, cli_env
    )
    try:
        deadline = time.monotonic() + 120
        while "Dropped 2 rows with the wrong number of values" not in "\n".join(run.lines):
            assert run.proc.poll() is None, run.output()
            assert time.monotonic() < deadline, run.output()
            time.sleep(0.2)
        assert "rows 2 and 52" in "\n".join(run.lines)
        run.interrupt()  # Ctrl-C: the CLI stops its job and sandbox itself
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    output = run.output()
    assert "Traceback" not in output and "ParserWarning" not in output, output
