"""A worker process for tests: `trainbot worker` (bot/cli.py cmd_worker) with the stand-in
sandbox and code generator of tests/support/worker_standins.py.

    STANDIN_ROOT=/tmp/x DATABASE_URL=... python -m tests.support.worker_entry

Settings come from the environment as in `trainbot worker`. It prints "WORKER <id>" once it
claims, drains on SIGTERM (or Ctrl-C) as `trainbot worker` does, prints "DRAINED" and exits 0.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from pipeline.bootstrap import bootstrap
from pipeline.events import StoredOnly
from pipeline.settings import Settings
from tests.support.worker_standins import RemoteLikeProvider, RemoteTimings, TinyGenerator


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    settings = Settings()
    provider = RemoteLikeProvider(
        Path(os.environ["STANDIN_ROOT"]), timings=RemoteTimings.from_env(os.environ)
    )
    services = bootstrap(settings, sink=StoredOnly(), codegen=TinyGenerator(), sandboxes=provider)
    provider.owner = services.worker.id
    signal.signal(signal.SIGTERM, _interrupt)
    services.worker.start()
    print(f"WORKER {services.worker.id}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        print("DRAINING", flush=True)
        services.worker.drain()
        print("DRAINED", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
