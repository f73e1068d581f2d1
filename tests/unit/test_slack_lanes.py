"""Per-channel lanes and pacing: a busy channel never delays another, a lane keeps order."""

from __future__ import annotations

import threading
import time

from bot.slack_lanes import ChannelPacer, Deferred, Lanes


class FakeTime:
    """A clock that only sleeping moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_pacer_spaces_writes_per_channel_only() -> None:
    fake = FakeTime()
    pacer = ChannelPacer(1.0, clock=fake.clock, sleep=fake.sleep)
    at: list[tuple[str, float]] = []
    for channel in ("C1", "C1", "C2", "C1"):
        pacer.write(channel, lambda c=channel: at.append((c, fake.now)))
    assert at == [("C1", 0.0), ("C1", 1.0), ("C2", 1.0), ("C1", 2.0)]


def test_a_busy_channel_does_not_delay_another_channels_first_message() -> None:
    interval = 0.1
    pacer = ChannelPacer(interval)
    lanes = Lanes(lambda jobs: None)
    sent: dict[str, list[float]] = {"C1": [], "C2": []}
    done = threading.Event()

    def write(channel: str) -> None:
        pacer.write(channel, lambda: sent[channel].append(time.monotonic()))
        if len(sent["C1"]) == 10:
            done.set()

    start = time.monotonic()
    for _ in range(10):
        lanes.submit("C1", "job-busy", lambda: write("C1"))
    lanes.submit("C2", "job-quiet", lambda: write("C2"))
    assert done.wait(10)
    lanes.close()
    assert sent["C1"][-1] - start >= 9 * interval * 0.95  # C1 was paced ...
    assert sent["C2"][0] - start < interval  # ... and C2 did not wait behind it
    assert all(b - a >= interval * 0.95 for a, b in zip(sent["C1"], sent["C1"][1:], strict=False))


def test_a_lane_keeps_the_order_of_its_work_and_clear_drops_what_waits() -> None:
    lanes = Lanes(lambda jobs: None)
    seen: list[int] = []
    gate = threading.Event()
    lanes.submit("C1", "job", gate.wait)
    for i in range(5):
        lanes.submit("C1", "job", lambda i=i: seen.append(i))
    gate.set()
    deadline = time.monotonic() + 5
    while not lanes.idle():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert seen == [0, 1, 2, 3, 4]

    gate.clear()
    lanes.submit("C1", "job", gate.wait)
    time.sleep(0.05)  # the lane is now blocked in the first piece of work
    lanes.submit("C1", "job", lambda: seen.append(99))
    lanes.clear()
    gate.set()
    lanes.close()
    assert 99 not in seen


def test_lanes_tick_their_jobs_cards_and_idle_lanes_end() -> None:
    ticked: list[set[str]] = []

    def tick(jobs: set[str]) -> float | None:
        ticked.append(jobs)
        return None

    lanes = Lanes(tick, idle_seconds=0.05)
    lanes.submit("C1", "job-1")
    lanes.submit("C2", "job-2", lambda: None)
    deadline = time.monotonic() + 5
    while lanes.count():
        assert time.monotonic() < deadline, "idle lanes did not end"
        time.sleep(0.02)
    assert {"job-1"} in ticked and {"job-2"} in ticked


def wait_idle(lanes: Lanes, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not lanes.idle():
        assert time.monotonic() < deadline, "the lanes did not finish"
        time.sleep(0.01)


def test_urgent_work_goes_before_everything_waiting_in_its_lane() -> None:
    lanes = Lanes(lambda jobs: None)
    seen: list[str] = []
    gate = threading.Event()
    lanes.submit("C1", "job", gate.wait)  # the lane is busy writing
    for i in range(3):
        lanes.submit("C1", "job", lambda i=i: seen.append(f"progress {i}"))
    lanes.submit("C1", "job", lambda: seen.append("outcome"), urgent=True)
    gate.set()
    wait_idle(lanes)
    lanes.close()
    assert seen == ["outcome", "progress 0", "progress 1", "progress 2"]


def test_deferred_work_is_tried_again_later_while_the_lane_goes_on() -> None:
    lanes = Lanes(lambda jobs: None)
    seen: list[str] = []
    tries: list[float] = []

    def limited() -> None:
        tries.append(time.monotonic())
        if len(tries) == 1:
            raise Deferred(0.2)  # its method's window is full for 0.2 s
        seen.append("upload")

    lanes.submit("C1", "job", limited)
    lanes.submit("C1", "job", lambda: seen.append("reply"))
    wait_idle(lanes)
    lanes.close()
    assert seen == ["reply", "upload"]
    assert tries[1] - tries[0] >= 0.2
