"""Per-channel lanes: each Slack channel gets its own queue and thread, so a busy channel never
delays another channel's messages. Writes to one channel are spaced by the pacer, Slack's pace
of about one message a second per channel (docs.slack.dev/apis/web-api/rate-limits: "Posting
messages"), so a lane is a budget of about one write a second, and it spends it in this order:

1. urgent work (a job's outcome): all of it, at once, before anything else;
2. the tick (bot.job_messages.JobMessenger.flush_due): at most one write of the lane's cards
   and outcomes a turn;
3. one piece of other work, in the order it came (a job's events keep their order).

Work that finds its Slack method's budget spent raises `Deferred` and is tried again later, at
the back of the lane, while the lane goes on with the rest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[], None]
# Flushes the lane's due card edits; answers the seconds until the next one is due (None: no
# card of the lane's jobs is waiting or ticking).
Tick = Callable[[set[str]], float | None]
IDLE_SECONDS = 60.0  # a lane with nothing to do and no ticking card ends after this long
CLOSING_POLL = 0.2  # how often a closing lane looks whether it is done
RETRY_TICK_SECONDS = 1.0  # after a tick that failed, the next comes this soon


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


class Deferred(Exception):  # noqa: N818 - a signal to the lane, not a failure
    """Raised by work that cannot be done yet (its Slack method's budget is spent)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"deferred {seconds:.1f}s")
        self.seconds = max(0.05, seconds)


class _Lane:
    def __init__(self, key: str, owner: Lanes) -> None:
        self.key = key
        self.jobs: set[str] = set()
        self.urgent: deque[Work] = deque()
        self.normal: deque[Work] = deque()
        self.later: list[tuple[float, Work]] = []  # deferred work and when to try it again
        self.busy = False
        self.woken = threading.Condition(owner.lock)
        self._owner = owner
        self.thread = threading.Thread(target=self._run, name=f"slack-lane-{key}", daemon=True)

    def pending(self) -> int:
        return len(self.urgent) + len(self.normal) + len(self.later)

    def _run(self) -> None:
        idle_since = time.monotonic()
        while True:
            for urgent in self._take_urgent():
                self._do(urgent)
            due = self._owner.tick_safely(self.jobs)
            work = self._take_normal()
            if work is not None:
                self._do(work)
            if work is not None or due == 0:
                idle_since = time.monotonic()
                continue
            if self._wait(due, idle_since):
                return

    def _take_urgent(self) -> list[Work]:
        with self._owner.lock:
            urgent = list(self.urgent)
            self.urgent.clear()
            self.busy = bool(urgent)
            return urgent

    def _take_normal(self) -> Work | None:
        with self._owner.lock:
            now = time.monotonic()
            ready = [work for at, work in self.later if at <= now]
            self.later = [(at, work) for at, work in self.later if at > now]
            self.normal.extend(ready)
            work = self.normal.popleft() if self.normal else None
            self.busy = work is not None
            return work

    def _do(self, work: Work) -> None:
        try:
            work()
        except Deferred as wait:
            with self._owner.lock:
                if not self._owner.closing:  # a closing lane waits for no rate limit
                    self.later.append((time.monotonic() + wait.seconds, work))
        except Exception:  # noqa: BLE001 - the work reports its own failures; never stop
            log.exception("a Slack write in %s failed", self.key)
        finally:
            with self._owner.lock:
                self.busy = False

    def _wait(self, due: float | None, idle_since: float) -> bool:
        """Waits for work, the next due card or deferred work; True when the lane ends."""
        owner = self._owner
        with owner.lock:
            if owner.closing:
                self.later.clear()  # what waits for a rate limit is the next holder's
            if self.urgent or self.normal:
                return False
            waits = [owner.idle_seconds if due is None else max(0.01, due)]
            waits += [max(0.01, at - time.monotonic()) for at, _ in self.later]
            if owner.closing:
                waits.append(CLOSING_POLL)
            self.woken.wait(min(waits))
            if self.urgent or self.normal or self.later:
                return False
            recent = time.monotonic() - idle_since < owner.idle_seconds
            if not owner.closing and (due is not None or recent):
                return False
            owner.lanes.pop(self.key, None)  # under the lock `submit` takes: nothing is lost
            return True


class Lanes:
    """Hands each piece of work to its channel's lane, starting the lane when needed."""

    def __init__(self, tick: Tick, *, idle_seconds: float = IDLE_SECONDS) -> None:
        self._tick = tick
        self.idle_seconds = idle_seconds
        self.closing = False
        self.lanes: dict[str, _Lane] = {}
        self.lock = threading.Lock()

    def submit(
        self, key: str, job_id: str, work: Work | None = None, *, urgent: bool = False
    ) -> None:
        """Queues `work` in lane `key` (`urgent`: before all other work); without work, only
        makes the lane tick the job's card."""
        with self.lock:
            lane = self.lanes.get(key)
            new = lane is None
            if lane is None:
                lane = self.lanes[key] = _Lane(key, self)
            lane.jobs.add(job_id)
            if work is not None:
                (lane.urgent if urgent else lane.normal).append(work)
            lane.woken.notify()
            if new:
                lane.thread.start()

    def idle(self) -> bool:
        """Nothing queued and nothing being written, in any lane."""
        with self.lock:
            return all(not lane.pending() and not lane.busy for lane in self.lanes.values())

    def clear(self) -> None:
        """Drops every queued piece of work (this process may no longer send)."""
        with self.lock:
            for lane in self.lanes.values():
                lane.urgent.clear()
                lane.normal.clear()
                lane.later.clear()

    def close(self, timeout: float = 10.0) -> None:
        """Lets every lane finish what it holds, then ends the lanes."""
        deadline = time.monotonic() + timeout
        with self.lock:
            self.closing = True
            threads = [lane.thread for lane in self.lanes.values()]
            for lane in self.lanes.values():
                lane.woken.notify()  # a lane waiting for work ends
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def count(self) -> int:
        with self.lock:
            return len(self.lanes)

    def tick_safely(self, jobs: set[str]) -> float | None:
        try:
            return self._tick(set(jobs))
        except Exception:  # noqa: BLE001 - a failed card edit must not end the lane
            log.exception("could not refresh cards")
            return RETRY_TICK_SECONDS
