"""Records a job's events in `job_events` and passes them on to the outside sinks."""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from pipeline.events import Event, EventKind, ProgressSink
from storage import queries
from storage.db import session_scope

log = logging.getLogger(__name__)

# Training output can be long; past this many lines a job stores a note instead of each line.
MAX_STORED_LOG_LINES = 2000


class JobRecorder:
    def __init__(self, engine: Engine, job_id: str, sink: ProgressSink) -> None:
        self.engine = engine
        self.job_id = job_id
        self.sink = sink
        self._log_lines = 0
        self._lock = threading.Lock()

    def emit(self, kind: EventKind, stage: str, message: str, **data: Any) -> None:
        self.publish(Event(job_id=self.job_id, kind=kind, stage=stage, message=message, data=data))

    def publish(self, event: Event) -> None:
        if self._should_store(event):
            self._store(event)
        self.sink.publish(event)

    def emit_in(
        self, session: Session, kind: EventKind, stage: str, message: str, **data: Any
    ) -> Event:
        """Stores an event in the caller's transaction, so that whoever sees the change it
        belongs to (a job that failed) also sees its event. `announce` it after the commit."""
        event = Event(job_id=self.job_id, kind=kind, stage=stage, message=message, data=data)
        _add(session, event)
        return event

    def announce(self, event: Event) -> None:
        self.sink.publish(event)

    def _should_store(self, event: Event) -> bool:
        if event.kind != EventKind.LOG:
            return True
        with self._lock:
            self._log_lines += 1
            count = self._log_lines
        if count == MAX_STORED_LOG_LINES + 1:
            note = f"(output past {MAX_STORED_LOG_LINES} lines is not stored)"
            self._store(replace(event, message=note, data={}))
        return count <= MAX_STORED_LOG_LINES

    def _store(self, event: Event) -> None:
        with session_scope(self.engine) as session:
            _add(session, event)


def _add(session: Session, event: Event) -> None:
    queries.add_event(
        session,
        job_id=event.job_id,
        kind=event.kind.value,
        stage=event.stage,
        message=event.message,
        data=event.data,
        at=event.at,
    )
