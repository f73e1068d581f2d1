"""Wake-ups across processes: PostgreSQL's LISTEN/NOTIFY, with a poll that works alone.

Whoever changes something others wait for calls `notify(session, channel)` inside the same
transaction: PostgreSQL delivers a NOTIFY only when that transaction commits (and drops it on
rollback), so a woken reader always finds the change. A `Wakeup` is what waits: it listens on
a connection of its own and sets an event on every notification; `wait(timeout)` returns on
that event, on a `wake()` from this process, or after `timeout` — the poll, the only signal
from other processes on SQLite and whenever the listening connection is down.
"""

from __future__ import annotations

import logging
import threading
import weakref

import psycopg
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

log = logging.getLogger(__name__)

JOBS_CHANNEL = "trainbot_jobs"  # a job was queued or handed back: workers look for work
EVENTS_CHANNEL = "trainbot_events"  # a job event was stored: the notifier reads on
RECONNECT_SECONDS = 2.0


def notify(session: Session, channel: str) -> None:
    """Wakes the listeners of `channel` once the session's transaction commits: every
    process's on PostgreSQL; on SQLite, which has no NOTIFY, this process's own (its
    notifier and worker), while other processes rely on their poll."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})
        return
    pending: set[str] = session.info.setdefault(_PENDING, set())
    if not pending:
        sqlalchemy_event.listen(session, "after_commit", _wake_local, once=True)
    pending.add(channel)


_PENDING = "trainbot_pending_wakeups"
_local: dict[str, weakref.WeakSet[Wakeup]] = {}
_local_lock = threading.Lock()


def _wake_local(session: Session) -> None:
    channels = session.info.pop(_PENDING, set())
    with _local_lock:
        waiting = [w for channel in channels for w in _local.get(channel, ())]
    for wakeup in waiting:
        wakeup.wake()


def listen_supported(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


class Wakeup:
    """Waits for `channel`'s notifications (PostgreSQL), for `wake()`, or for a timeout."""

    def __init__(self, engine: Engine, channel: str, *, listen: bool = True) -> None:
        self.channel = channel
        self._listen = listen and listen_supported(engine)
        self._conninfo = (
            engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            if self._listen
            else ""
        )
        self._event = threading.Event()
        self._stopped = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        if not self._listen:
            with _local_lock:
                _local.setdefault(channel, weakref.WeakSet()).add(self)

    @property
    def listening(self) -> bool:
        """True while notifications can arrive (not on SQLite, nor while reconnecting)."""
        return self._listening.is_set()

    def start(self) -> None:
        if self._listen and self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"listen-{self.channel}", daemon=True
            )
            self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stopped.set()
        self._event.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        """True when woken before `timeout`; the wake-up is used up either way."""
        woken = self._event.wait(timeout)
        self._event.clear()
        return woken

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    # The channel is one of this module's constants, never user input.
                    conn.execute(f"LISTEN {self.channel}")
                    self._listening.set()
                    # Something may have been queued while nobody listened: look once.
                    self._event.set()
                    while not self._stopped.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            self._event.set()
            except psycopg.Error:
                log.warning("lost the %s listener; polling until it is back", self.channel)
            finally:
                self._listening.clear()
            self._stopped.wait(RECONNECT_SECONDS)
