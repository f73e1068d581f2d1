"""Slack's per-method rate-limit tiers, kept on our side so the notifier spends them wisely.

Slack counts calls "per API method per app per workspace" in one-minute windows
(docs.slack.dev/apis/web-api/rate-limits: Tier 3 "50+ per minute", Tier 4 "100+ per minute");
each method's tier is on its reference page (docs.slack.dev/reference/methods/<method>).
Waiting for a 429 and its Retry-After works (bot.slack_client retries), but it stalls the
channel's lane for as long as the window stays full. So the notifier asks first: `take` a slot
when one is free, or leaves the write for later and does something else meanwhile. `keep`
holds slots back for what matters more (a card's final edit over a progress edit).

One budget per process; only the notifier's lease holder writes job messages, so one
process's view is the workspace's, save for the odd listener call (an Extend button's reply),
which the documented "+" in "50+" absorbs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

# The documented floors of the tiered methods the notifier calls. chat.postMessage is in
# Slack's special tier (about one message a second per channel: bot.slack_lanes.ChannelPacer).
PER_MINUTE: dict[str, int] = {
    "chat.update": 50,  # Tier 3
    "conversations.join": 50,  # Tier 3
    "files.getUploadURLExternal": 100,  # Tier 4
    "files.completeUploadExternal": 100,  # Tier 4
}
WINDOW_SECONDS = 60.0
# Slack stamps a call when it arrives; we stamp it when its answer is back (later), so our
# window never frees a slot before Slack's does. The margin covers clocks and retries.
MARGIN_SECONDS = 0.5
UNLIMITED = 1_000_000


class MethodBudget:
    def __init__(
        self,
        per_minute: dict[str, int] | None = None,
        *,
        window: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = PER_MINUTE if per_minute is None else per_minute
        self.window = window
        self._clock = clock
        self._answered: dict[tuple[str, str], deque[float]] = {}  # when, oldest first
        self._in_flight: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def available(self, workspace: str, method: str) -> int:
        """Slots of `method` free in `workspace` now (a large number for untiered methods)."""
        limit = self.per_minute.get(method)
        if limit is None:
            return UNLIMITED
        with self._lock:
            return limit - self._used(workspace, method)

    def take(self, workspace: str, methods: Sequence[str], *, keep: int = 0) -> float:
        """Takes a slot of each of `methods` when each has more than `keep` free, and answers
        0; else takes none and answers the seconds until they may be taken. A caller that
        took makes its calls and `stamp`s each method, whatever the answers."""
        with self._lock:
            wait = max((self._wait(workspace, m, keep) for m in methods), default=0.0)
            if wait > 0:
                return wait
            for method in methods:
                if method in self.per_minute:
                    key = (workspace, method)
                    self._in_flight[key] = self._in_flight.get(key, 0) + 1
            return 0.0

    def stamp(self, workspace: str, method: str) -> None:
        """The call a slot was taken for is answered: the slot frees a window from now."""
        key = (workspace, method)
        with self._lock:
            if self._in_flight.get(key, 0) <= 0:
                return
            self._in_flight[key] -= 1
            self._answered.setdefault(key, deque()).append(self._clock())

    def seconds_until_free(self, workspace: str, method: str, *, keep: int = 0) -> float:
        """How long until `take(..., [method], keep=keep)` can succeed (0: now)."""
        with self._lock:
            return self._wait(workspace, method, keep)

    def _wait(self, workspace: str, method: str, keep: int) -> float:
        limit = self.per_minute.get(method)
        if limit is None:
            return 0.0
        short = self._used(workspace, method) - (limit - keep - 1)
        if short <= 0:
            return 0.0
        answered = self._answered.get((workspace, method), deque())
        if short > len(answered):
            return 1.0  # only calls still in flight would free it: look again soon
        frees_at = answered[short - 1] + self.window + MARGIN_SECONDS
        return max(0.05, frees_at - self._clock())

    def _used(self, workspace: str, method: str) -> int:
        key = (workspace, method)
        answered = self._answered.setdefault(key, deque())
        horizon = self._clock() - self.window - MARGIN_SECONDS
        while answered and answered[0] <= horizon:
            answered.popleft()
        return len(answered) + self._in_flight.get(key, 0)
