"""Runs one command of a stand-in remote sandbox and records when it started and ended.

Started by tests/support/worker_standins.py in a session of its own, so the command outlives
the worker process that asked for it, as a command in an E2B VM outlives its caller. It
records its own end, so a copy nobody killed shows up in the journal when it finishes.
Standard library only: it runs as a file, outside the project's imports.

    python worker_supervisor.py JOURNAL SANDBOX_ID JOB_ID WORKER_ID EXIT_FILE -- COMMAND...
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def record(journal: str, **entry: object) -> None:
    """One JSON line, in one write to a file opened for appending: lines never interleave."""
    line = json.dumps({**entry, "at": time.time()}) + "\n"
    fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def main(argv: list[str]) -> int:
    journal, sandbox, job, worker, exit_file, separator, *command = argv
    assert separator == "--" and command, argv
    record(journal, event="run-start", sandbox=sandbox, job=job, worker=worker, pgid=os.getpgid(0))
    code = subprocess.call(command)
    record(journal, event="run-end", sandbox=sandbox, job=job, worker=worker, code=code)
    partial = Path(exit_file + ".partial")
    partial.write_text(str(code))
    partial.replace(exit_file)  # the sandbox reads the code only once it is whole
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
