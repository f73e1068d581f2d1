"""Per-channel lanes: each Slack channel gets its own ordered queue and thread, so a busy channel
never delays another channel's messages, and a job's messages (always in its channel's lane)
keep their order. Writes to one channel are spaced by the pacer, Slack's pace of about one
message a second per channel (docs.slack.dev/apis/web-api/rate-limits: "Posting messages").
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[], None]
# Flushes the lane's due card edits; answers the seconds until the next one is due (None: no
# card of the lane's jobs is waiting or ticking).
Tick = Callable[[set[str]], float | None]
IDLE_SECONDS = 60.0  # a lane with nothing to do and no ticking card ends after this long


class ChannelPacer:
    """Spaces writes into one channel by `interval`, measured from the end of the previous
    write (Slack counts arrivals); writes into other channels never wait for it."""

    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval
        self._clock, self._sleep = clock, sleep
        self._last: dict[str, float] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def write(self, channel: str, call: Callable[[], T]) -> T:
        with self._guard:
            lock = self._locks.setdefault(channel, threading.Lock())
        with lock:
            wait = self._last.get(channel, -1e9) + self.interval - self._clock()
            if wait > 0:
                self._sleep(wait)
            try:
                return call()
            finally:
                self._last[channel] = self._clock()


def _nothing() -> None:
    pass


class _Lane:
    def __init__(self, key: str, owner: Lanes) -> None:
        self.key = key
        self.jobs: set[str] = set()
        self.queue: queue.Queue[Work] = queue.Queue()
        self.busy = False
        self._owner = owner
        self.thread = threading.Thread(target=self._run, name=f"slack-lane-{key}", daemon=True)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            due = self._owner.tick_safely(self.jobs)
            idle = self._owner.idle_seconds
            timeout = idle if due is None else max(0.01, min(due, idle))
            try:
                work = self.queue.get(timeout=min(timeout, 0.2) if self._owner.closing else timeout)
            except queue.Empty:
                if self._owner.retire(self, idle_since=idle_since, ticking=due is not None):
                    return
                continue
            self.busy = True
            try:
                work()
            except Exception:  # noqa: BLE001 - the work reports its own failures; never stop
                log.exception("a Slack write in %s failed", self.key)
            finally:
                self.busy = False
                idle_since = time.monotonic()


class Lanes:
    """Hands each piece of work to its channel's lane, starting the lane when needed."""

    def __init__(self, tick: Tick, *, idle_seconds: float = IDLE_SECONDS) -> None:
        self._tick = tick
        self.idle_seconds = idle_seconds
        self.closing = False
        self._lanes: dict[str, _Lane] = {}
        self._lock = threading.Lock()

    def submit(self, key: str, job_id: str, work: Work | None = None) -> None:
        """Queues `work` in lane `key`; without work, only makes the lane tick the job's card."""
        with self._lock:
            lane = self._lanes.get(key)
            new = lane is None
            if lane is None:
                lane = self._lanes[key] = _Lane(key, self)
            lane.jobs.add(job_id)
            # Without work, an empty piece still wakes the lane to tick the new job's card.
            lane.queue.put(work or _nothing)
            if new:
                lane.thread.start()

    def idle(self) -> bool:
        """Nothing queued and nothing being written, in any lane."""
        with self._lock:
            return all(lane.queue.empty() and not lane.busy for lane in self._lanes.values())

    def clear(self) -> None:
        """Drops every queued piece of work (this process may no longer send)."""
        with self._lock:
            for lane in self._lanes.values():
                while True:
                    try:
                        lane.queue.get_nowait()
                    except queue.Empty:
                        break

    def close(self, timeout: float = 10.0) -> None:
        """Lets every lane finish what it holds, then ends the lanes."""
        self.closing = True
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [lane.thread for lane in self._lanes.values()]
            for lane in self._lanes.values():
                lane.queue.put(_nothing)  # wakes a lane waiting for work, so it ends
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def count(self) -> int:
        with self._lock:
            return len(self._lanes)

    # -- the lanes' side ------------------------------------------------------------------

    def tick_safely(self, jobs: set[str]) -> float | None:
        try:
            return self._tick(set(jobs))
        except Exception:  # noqa: BLE001 - a failed card edit must not end the lane
            log.exception("could not refresh cards")
            return None

    def retire(self, lane: _Lane, *, idle_since: float, ticking: bool) -> bool:
        """True when the idle lane should end (checked under the lock that `submit` takes, so
        no work is queued into a lane that is ending)."""
        with self._lock:
            if not lane.queue.empty():
                return False
            if not self.closing and (ticking or time.monotonic() - idle_since < self.idle_seconds):
                return False
            self._lanes.pop(lane.key, None)
            return True
