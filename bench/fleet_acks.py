"""Ack latency under a fleet's load (bench/fleet.py, the issue's second benchmark).

Signed `/train` commands (the bot acks and opens the modal) and signed submissions of that modal
(each a valid request that records and queues a job) are fired at once by 1, 10 or 50 threads,
each on its own connection, as Slack's servers would; the time is the HTTP round trip to the
ack. The reference is the least a Bolt app can do: the same two listeners, each only calling
ack(), behind the same WSGI server (waitress, bot/web.py's thread count), in the same process
at the same time, fed the same requests in alternating rounds.

Both talk to a fake Slack Web API in a process of its own (`RemoteSlack`), as Slack is remote:
checking the bot's modal with slack_sdk's models is Slack's CPU, not the bot's. The reference
acks without calling Slack, so what it includes is Bolt (signature check, parsing, routing,
ack) and waitress, sharing the CPU with the bot and whatever else runs in the process.
"""

from __future__ import annotations

import functools
import json
import math
import multiprocessing
import secrets
import ssl
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_bolt import Ack, App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from bot.ids import CallbackId
from bot.manifest import EVENTS_PATH
from bot.web import THREADS
from tests.fakes.slack_api import Call, FakeSlack
from tests.support.slack_payloads import (
    SIGNING_SECRET,
    sign,
    slash_command,
    train_form,
    view_submission,
)

LEVELS = (1, 10, 50)
Request = tuple[bytes, str]  # body, what it is ("command" or "submission")


@dataclass
class Level:
    concurrency: int
    bot: list[float] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def p99(self, which: list[float]) -> float:
        return percentile(which, 0.99)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank percentile (p99 of 100 samples is the 99th smallest)."""
    if not values:
        return math.inf
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q * len(ranked)) - 1)]


def minimal_app(token: str, api_url: str) -> App:
    """A Bolt app that acks the command and the submission and does nothing else."""
    app = App(
        token=token,
        signing_secret=SIGNING_SECRET,
        client=WebClient(token=token, base_url=api_url),
    )

    @app.command("/train")
    def handle_command(ack: Ack) -> None:
        ack()

    @app.view(CallbackId.TRAIN_MODAL.value)
    def handle_submission(ack: Ack) -> None:
        ack()

    return app


@contextmanager
def serve(app: App) -> Iterator[str]:
    """`app` behind waitress with the bot's thread count, on a free port: its base URL."""
    from waitress.server import create_server

    server: Any = create_server(
        SlackRequestHandler(app, path=EVENTS_PATH), host="127.0.0.1", port=0, threads=THREADS
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        server.close()
        thread.join(5)


class RemoteSlack:
    """tests.fakes.slack_api.FakeSlack served from a spawned process of its own: `api_url`,
    the views it has been asked to open (`views()`), and once stopped, every call it answered
    (`calls`)."""

    def __init__(self, token: str) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_serve_slack, args=(child, token), name="remote-slack", daemon=True
        )
        self.token = token
        self.api_url = ""
        self.calls: list[Call] = []

    def __enter__(self) -> RemoteSlack:
        self._process.start()
        if not self._pipe.poll(60):
            self._process.kill()
            raise RuntimeError("the fake Slack's process did not start within 60 s")
        self.api_url = self._pipe.recv()
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._pipe.send("stop")
            if self._pipe.poll(10):
                self.calls = self._pipe.recv()
        finally:
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()

    def views(self) -> list[dict[str, Any]]:
        self._pipe.send("views")
        views: list[dict[str, Any]] = self._pipe.recv()
        return views

    def opened_view(self, timeout: float = 10) -> dict[str, Any]:
        """The view of the latest views.open, waiting up to `timeout` for one."""
        deadline = time.monotonic() + timeout
        while not (opened := [v["view"] for v in self.views() if v["method"] == "views.open"]):
            if time.monotonic() > deadline:
                raise AssertionError(f"no views.open reached the fake Slack in {timeout} s")
            time.sleep(0.02)
        return opened[-1]


def _serve_slack(pipe: Any, token: str) -> None:
    """RemoteSlack's process: serves until told "stop", then sends back its calls."""
    with FakeSlack(token=token) as slack:
        pipe.send(slack.api_url)
        while (order := pipe.recv()) != "stop":
            pipe.send(list(slack.views) if order == "views" else None)
        pipe.send(list(slack.calls))


class Requests:
    """Fresh signed bodies: every command its own trigger id, every submission its own name
    (so each records a new job, not a redelivery)."""

    def __init__(
        self,
        view: dict[str, Any],
        *,
        channels: list[str],
        users: list[str],
        api_url: str = "",
    ) -> None:
        self.view = view
        self.api_url = api_url  # the Slack Web API the bot calls (the reference's too)
        self.channels, self.users = channels, users
        self._n = 0
        self._tag = secrets.token_hex(3)

    def next(self) -> Request:
        self._n += 1
        n, user = self._n, self.users[self._n % len(self.users)]
        if n % 2:
            form = slash_command(
                "",
                user=user,
                channel=self.channels[n % len(self.channels)],
                trigger_id=f"ack-{self._tag}-{n}",
            )
            return urlencode(form).encode(), "command"
        fields = train_form(name=f"ack {self._tag} {n}", dataset="iris")
        payload = view_submission(self.view, fields, user=user)
        return urlencode({"payload": json.dumps(payload)}).encode(), "submission"


def measure(
    bot_url: str,
    reference_url: str,
    requests: Requests,
    *,
    samples: int,
    levels: tuple[int, ...] = LEVELS,
) -> list[Level]:
    """Rounds of `level` requests at once, to the bot and then the reference, until each has
    about `samples` answers at that level."""
    results = []
    for concurrency in levels:
        level = Level(concurrency)
        for _ in range(max(1, math.ceil(samples / concurrency))):
            batch = [requests.next() for _ in range(concurrency)]
            for url, out in ((bot_url, level.bot), (reference_url, level.reference)):
                times, failures = fire(url, batch)
                out.extend(times)
                level.failures.extend(failures)
        results.append(level)
    return results


def fire(base_url: str, batch: list[Request]) -> tuple[list[float], list[str]]:
    """Sends every request of `batch` at the same moment, each from its own thread and
    connection; the round trips, and what went wrong."""
    url = base_url.rstrip("/") + EVENTS_PATH
    start = threading.Barrier(len(batch))
    times: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def send(body: bytes, kind: str) -> None:
        with httpx.Client(timeout=10, verify=_tls()) as client:
            headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body)}
            start.wait()
            t0 = time.monotonic()
            try:
                response = client.post(url, content=body, headers=headers)
                problem = "" if response.status_code == 200 else f"{kind}: {response.status_code}"
            except httpx.HTTPError as error:
                problem = f"{kind}: {type(error).__name__}"
            elapsed = time.monotonic() - t0
        with lock:
            times.append(elapsed)
            if problem:
                failures.append(problem)

    threads = [threading.Thread(target=send, args=request) for request in batch]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return times, failures


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client (the bots are plain HTTP; httpx builds a context per
    client anyway, about 1 MB and milliseconds of CPU each, which would load the process
    being measured)."""
    return ssl.create_default_context()


def summary(levels: list[Level]) -> str:
    parts = []
    for level in levels:
        parts.append(
            f"{level.concurrency} at once: p99 {level.p99(level.bot) * 1000:.0f} ms "
            f"(median {statistics.median(level.bot) * 1000:.0f}) vs minimal "
            f"{level.p99(level.reference) * 1000:.0f} ms "
            f"(median {statistics.median(level.reference) * 1000:.0f}), "
            f"{len(level.bot)} samples"
        )
    return "; ".join(parts)
