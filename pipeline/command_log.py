"""A sandbox command's output: every line to a log file, a bounded head and tail as events.

A training script may print 100,000 lines. Stored one by one that is 100,000 rows and
commits, and the sandbox calls `line` from the thread that drains the command's pipes, so a
slow callback fills the pipe and stalls the script itself. Here `line` only appends to a
buffered file and to memory. A flusher thread stores the first LOG_HEAD_LINES as they come,
a batch per transaction (`trainbot logs` and the console see progress early); `close`, which
runs however the command ended (exit, failure, timeout, cancel), stores one note saying how
many lines only the file holds, then the last LOG_TAIL_LINES: a failure's log tail is the
command's real end. The sink also sees, past the head, at most one line every LIVE_SECONDS,
unstored, so a console's latest-line display keeps moving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from pipeline.events import Event, EventKind
from pipeline.limits import LOG_FILE_MAX_BYTES, LOG_HEAD_LINES, LOG_LINE_CHARS, LOG_TAIL_LINES
from pipeline.recorder import JobRecorder

log = logging.getLogger(__name__)

TRAIN_LOG = "train.log"  # the training command's log, an artifact beside the model
FLUSH_SECONDS = 0.5  # how long a head line may wait to be stored; the file is flushed as often
LIVE_SECONDS = 0.25  # a terminal display refreshes four times a second (rich's Live)
LIVE = "live"  # data key of a line the sink sees but the database does not
NOTE = "log_file"  # data key of the note event: the log file's path
_MB = 1024 * 1024


@dataclass(frozen=True)
class SkippedLines:
    """What a command's note event says: lines stored only in its log file."""

    skipped: int  # lines not stored as events
    lines: int  # lines the command printed
    log_file: str  # path on the disk of the worker that ran the job
    complete: bool  # the file holds every line (not cut at LOG_FILE_MAX_BYTES)


def skipped_notes(events: Iterable[Any]) -> list[SkippedLines]:
    """The notes among a job's events (stored rows or Events), one per command whose output
    events do not hold whole (a job that retried training has one per try)."""
    notes = []
    for event in events:
        data = event.data if isinstance(event.data, dict) else {}
        if event.kind == EventKind.LOG and NOTE in data:
            notes.append(
                SkippedLines(
                    skipped=int(data.get("skipped", 0)),
                    lines=int(data.get("lines", 0)),
                    log_file=str(data[NOTE]),
                    complete=bool(data.get("complete", True)),
                )
            )
    return notes


class CommandLog:
    """The output of one command of one job; a context manager that closes it."""

    def __init__(
        self,
        recorder: JobRecorder,
        stage: str,
        path: Path,
        *,
        head: int = LOG_HEAD_LINES,
        tail: int = LOG_TAIL_LINES,
        max_bytes: int = LOG_FILE_MAX_BYTES,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self.recorder = recorder
        self.stage = stage
        self.path = path
        self.lines = 0  # every line the command printed
        self._head = head
        self._flush_seconds = flush_seconds
        self._pending: list[Event] = []  # head lines not stored yet
        self._tail: deque[tuple[float, str]] = deque(maxlen=tail)
        self._max_bytes = max_bytes
        self._bytes = 0
        self._written = 0  # lines in the file
        self._full = False  # a line did not fit: the file stops there, a prefix of the output
        self._next_live = 0.0
        self._closed = False
        self._lock = threading.Lock()
        self._storing = threading.Lock()  # one batch at a time, so head lines keep their order
        self._stop = threading.Event()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO | None = path.open("wb", buffering=_MB)
        self._flusher = threading.Thread(
            target=self._flush_forever, name=f"log-{recorder.job_id[:8]}", daemon=True
        )
        self._flusher.start()

    def __enter__(self) -> CommandLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except Exception:  # noqa: BLE001 - the command's own failure is the one to report
            log.exception("could not store the end of job %s's output", self.recorder.job_id)

    def line(self, text: str) -> None:
        """One line of output. Called per line from the sandbox's reading thread: memory
        and a buffered file only, never the database."""
        now = time.time()
        raw = text.encode("utf-8", "replace") + b"\n"
        with self._lock:
            if self._closed:
                return
            self.lines += 1
            if not self._full:
                self._write(raw)
            if self.lines <= self._head:
                self._pending.append(self._event(text, now))
                return
            self._tail.append((now, text[:LOG_LINE_CHARS]))
            if now < self._next_live:
                return
            self._next_live = now + LIVE_SECONDS
        self.recorder.announce(self._event(text, now, **{LIVE: True}))

    def close(self) -> None:
        """Stores what is left: the head's last batch, the note, the tail. Once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_file()
        self._stop.set()
        self._flusher.join()
        self._store_head()
        skipped = self.lines - min(self.lines, self._head) - len(self._tail)
        complete = self._file_complete()
        ending = [self._event(text, at) for at, text in self._tail]
        if skipped or not complete:
            ending.insert(0, self._note(skipped, complete))
        self.recorder.publish_all(ending)

    # -- the reading thread, under the lock ----------------------------------------------

    def _write(self, raw: bytes) -> None:
        if self._file is None:
            return
        if self._bytes + len(raw) > self._max_bytes:
            self._full = True
            return
        try:
            self._file.write(raw)
        except OSError:  # a full disk must not stop training; the note says the file is short
            log.exception("could not write %s", self.path)
            self._file, self._full = None, True
            return
        self._bytes += len(raw)
        self._written += 1

    def _event(self, text: str, at: float, **data: Any) -> Event:
        if len(text) > LOG_LINE_CHARS:
            text = text[:LOG_LINE_CHARS] + " …"
        text = text.replace("\x00", "\ufffd")  # PostgreSQL's text holds no NUL
        return Event(
            job_id=self.recorder.job_id,
            kind=EventKind.LOG,
            stage=self.stage,
            message=text,
            data=data,
            at=datetime.fromtimestamp(at, UTC),
        )

    # -- the flusher thread --------------------------------------------------------------

    def _flush_forever(self) -> None:
        while not self._stop.wait(self._flush_seconds):
            with self._lock:
                if self._file is not None:
                    try:
                        self._file.flush()  # `tail -f` on the file follows the command
                    except OSError:
                        log.exception("could not write %s", self.path)
                        self._file, self._full = None, True
            try:
                self._store_head()
            except Exception:  # noqa: BLE001 - lines lost to a database hiccup stay in the file
                log.exception("could not store job %s's output", self.recorder.job_id)

    def _store_head(self) -> None:
        with self._storing:
            with self._lock:
                batch, self._pending = self._pending, []
            self.recorder.publish_all(batch)

    # -- the end ---------------------------------------------------------------------------

    def _close_file(self) -> None:
        if self._file is None:
            return
        try:
            if self._written < self.lines:
                dropped = self.lines - self._written
                self._file.write(
                    f"[trainbot] the log stops here at {self._max_bytes // _MB} MB: "
                    f"{dropped:,} more lines were not written\n".encode()
                )
            self._file.close()
        except OSError:
            log.exception("could not write %s", self.path)
        self._file = None

    def _file_complete(self) -> bool:
        return self._written == self.lines

    def _note(self, skipped: int, complete: bool) -> Event:
        first = min(self.lines, self._head) + 1
        if complete:
            where = f"all {self.lines:,} are in {self.path}"
        elif self._written:
            where = f"the first {self._written:,} are in {self.path} (it stops at its size cap)"
        else:
            where = f"the log file {self.path} could not be written"
        text = (
            f"… {skipped:,} lines not stored here (lines {first:,} to {first + skipped - 1:,} "
            f"of {self.lines:,}); {where}"
        )
        if not skipped:
            text = f"… every line is stored here; {where}"
        data = {NOTE: str(self.path), "skipped": skipped, "lines": self.lines}
        return Event(
            job_id=self.recorder.job_id,
            kind=EventKind.LOG,
            stage=self.stage,
            message=text,
            data={**data, "complete": complete},
        )
