"""Records a job's events in `job_events` and passes them on to the outside sinks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from pipeline.events import Event, EventKind, ProgressSink
from storage import queries
from storage.db import session_scope

log = logging.getLogger(__name__)


class JobRecorder:
    def __init__(self, engine: Engine, job_id: str, sink: ProgressSink) -> None:
        self.engine = engine
        self.job_id = job_id
        self.sink = sink

    def emit(self, kind: EventKind, stage: str, message: str, **data: Any) -> None:
        self.publish(Event(job_id=self.job_id, kind=kind, stage=stage, message=message, data=data))

    def publish(self, event: Event) -> None:
        with session_scope(self.engine) as session:
            _add(session, event)
        self.sink.publish(event)

    def publish_all(self, events: Sequence[Event]) -> None:
        """Stores `events` in one transaction, then passes them on: a command's output lines
        come in batches (pipeline/command_log.py), so many lines cost one commit."""
        if not events:
            return
        with session_scope(self.engine) as session:
            for event in events:
                _add(session, event)
        for event in events:
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
