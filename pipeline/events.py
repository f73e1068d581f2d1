"""Progress events: the only way the pipeline tells the outside world what it is doing.

The pipeline never imports Slack or the CLI. It publishes plain `Event` objects to a
`ProgressSink`; the CLI display, the Slack notifier and test recorders implement it.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol


class EventKind(enum.StrEnum):
    QUEUED = "queued"  # the job was recorded (storage writes it with the job: QUEUED_KIND)
    STARTED = "started"
    PROGRESS = "progress"
    FINISHED = "finished"
    WARNING = "warning"
    FAILED = "failed"
    LOG = "log"  # one line of output from code running in the sandbox
    EXPIRING = "expiring"  # a live app stops soon (data: expires_at, ISO 8601)


@dataclass(frozen=True)
class Event:
    job_id: str
    kind: EventKind
    stage: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


class ProgressSink(Protocol):
    def publish(self, event: Event) -> None: ...


class StoredOnly:
    """The sink of processes that show events from the database (the Slack notifier, which
    follows job_events) or not at all (`trainbot worker`): the recorder has stored them."""

    def publish(self, event: Event) -> None:
        pass


class RecordingSink:
    """Keeps every event in memory; used by tests and by the CLI's summary."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def publish(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of_kind(self, kind: EventKind) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.kind == kind]
