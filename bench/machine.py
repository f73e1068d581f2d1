"""The machine a benchmark run measured: printed at the top of `python -m bench`'s table, since
every figure (and the suite's 15 minutes) means something only on the machine it came from."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from pathlib import Path

from tests.support.databases import POSTGRES_URL_ENV


def machine() -> str:
    """One line: CPU model, cores, memory, load, Python, PostgreSQL and the date (UTC)."""
    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, {memory_gib():.1f} GiB memory, "
        f"load {load():.2f} at start; Python {platform.python_version()}; "
        f"PostgreSQL {postgres_version()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20  # kB
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def load() -> float:
    """The 1-minute load average: on a shared machine, what else was running."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def postgres_version() -> str:
    """The server's version, asked of the database the benchmarks use, or why there is none."""
    url = os.environ.get(POSTGRES_URL_ENV) or os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        return "not configured"
    from sqlalchemy import create_engine, text

    engine = create_engine(url, connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SHOW server_version")).scalar_one()).split()[0]
    except Exception as error:  # the facts line must not stop a run; the cases say more
        return f"unreachable ({type(error).__name__})"
    finally:
        engine.dispose()
