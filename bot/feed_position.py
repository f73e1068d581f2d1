"""Where a follower of `job_events` stands: which ids it has handed out, which are done, and
the cursor it may save (every id up to it handled).

Ids can commit out of order on PostgreSQL (see storage.event_feed), so an id missing between
two read ones may still come. The position hands out ids strictly in order and stops at a
missing one until it has been missing for `grace` seconds; only then does it step over it.
An id stepped over is still looked for during `late_window` seconds (`watched`), and handed out
if it turns up then: late, but not lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

Clock = Callable[[], float]


class FeedPosition:
    def __init__(
        self,
        start: int,
        *,
        grace: float,
        late_window: float = 60.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self.read_upto = start  # the highest id handed out or stepped over
        self.grace = grace
        self.late_window = late_window
        self._clock = clock
        self._pending: set[int] = set()  # handed out, not done yet
        self._gap_seen_at: float | None = None  # when the id after read_upto was first missed
        self._watched: dict[int, float] = {}  # stepped-over id -> until when to look for it
        self._lock = threading.Lock()

    def accept(self, ids: Iterable[int]) -> list[int]:
        """Of `ids` (read after `read_upto`, ascending), those to hand out now, in order."""
        taken: list[int] = []
        now = self._clock()
        with self._lock:
            for event_id in ids:
                if event_id <= self.read_upto:
                    continue
                if event_id != self.read_upto + 1:
                    if self._gap_seen_at is None:
                        self._gap_seen_at = now
                    if now - self._gap_seen_at < self.grace:
                        break  # a lower id may still commit: wait for it
                    for missing in range(self.read_upto + 1, event_id):
                        self._watched[missing] = now + self.late_window
                self._gap_seen_at = None
                self.read_upto = event_id
                self._pending.add(event_id)
                taken.append(event_id)
        return taken

    def watched(self) -> list[int]:
        """Stepped-over ids still worth looking for."""
        now = self._clock()
        with self._lock:
            self._watched = {i: until for i, until in self._watched.items() if until > now}
            return sorted(self._watched)

    def accept_late(self, ids: Iterable[int]) -> list[int]:
        """Of stepped-over ids that have now turned up, those to hand out (each once)."""
        with self._lock:
            taken = [i for i in sorted(ids) if self._watched.pop(i, None) is not None]
            self._pending.update(taken)
        return taken

    def done(self, event_id: int) -> None:
        with self._lock:
            self._pending.discard(event_id)

    @property
    def saved_upto(self) -> int:
        """The cursor to save: every id up to it is done, or was stepped over."""
        with self._lock:
            return min(self._pending) - 1 if self._pending else self.read_upto

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def gap_wait(self) -> float | None:
        """Seconds until the missing id now waited for may be stepped over (None: none is)."""
        with self._lock:
            if self._gap_seen_at is None:
                return None
            return max(0.0, self._gap_seen_at + self.grace - self._clock())
