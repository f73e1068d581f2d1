"""Thousands of malformed requests at `trainbot serve`: none may get a 5xx, take over 5 s,
grow the server's memory without bound, or put a traceback in its log.

Bounded random payloads from a fixed seed (so a failure replays): random bytes, valid
Slack payloads with parts replaced by values of the wrong type, forms with odd fields,
bad signature headers; and job ids of every length and alphabet at the status API.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import pytest

from bot.ids import ActionId, CallbackId
from tests.support.serve_process import API_TOKEN, MB, Served, serve_process
from tests.support.slack_payloads import (
    block_action,
    event_callback,
    sign,
    slash_command,
    train_form,
    view_submission,
)

SEED = 20240508
EVENTS_REQUESTS = 1600  # half signed, half not
STATUS_REQUESTS = 800
SLOW = 5.0
RSS_GROWTH = 48 * MB  # the caches of a warm process, far below one body per request kept
FORM = "application/x-www-form-urlencoded"
CONTENT_TYPES = [FORM, "application/json", "text/plain", "", "application/json; charset=utf-8"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve_process(tmp_path_factory.mktemp("serve-fuzz")) as server:
        yield server


def wrong_value(rng: random.Random, depth: int = 0) -> Any:
    choices: list[Callable[[], Any]] = [
        lambda: None,
        lambda: rng.choice([True, False]),
        lambda: rng.randint(-(2**70), 2**70),
        lambda: rng.random() * 1e300,
        lambda: "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 40))),
        lambda: "",
        lambda: [],
        lambda: {},
        lambda: [wrong_value(rng, depth + 1) for _ in range(rng.randint(0, 3))],
        lambda: {str(i): wrong_value(rng, depth + 1) for i in range(rng.randint(0, 3))},
    ]
    return rng.choice(choices[:6] if depth > 3 else choices)()


def mutate(rng: random.Random, value: Any) -> Any:
    """`value` with one part, at any depth, replaced by a value of another type or removed."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(list(value))
        copy = dict(value)
        roll = rng.random()
        if roll < 0.2:
            del copy[key]
        elif roll < 0.5:
            copy[key] = wrong_value(rng)
        else:
            copy[key] = mutate(rng, copy[key])
        return copy
    if isinstance(value, list) and value and rng.random() < 0.8:
        copy = list(value)
        index = rng.randrange(len(copy))
        copy[index] = mutate(rng, copy[index]) if rng.random() < 0.6 else wrong_value(rng)
        return copy
    return wrong_value(rng)


def payloads(rng: random.Random) -> list[dict[str, Any]]:
    # A channel of its own for each click: FakeSlack, like Slack, lets a channel have about
    # one message a second, and the refusals of a thousand clicks in one channel would
    # queue behind it.
    channel = f"C{rng.randrange(10**9)}"
    modal = {"type": "modal", "callback_id": CallbackId.TRAIN_MODAL.value, "private_metadata": ""}
    return [
        view_submission(modal, train_form()),  # no name, no data: never starts a job
        block_action(ActionId.CANCEL_JOB.value, "0123456789abcdef", channel=channel),
        block_action(ActionId.RETRY_JOB.value, "fedcba9876543210", channel=channel),
        event_callback({"type": "app_home_opened", "user": "U1", "tab": "home"}),
        {"type": "url_verification", "challenge": "c", "token": "t"},
        {"type": "view_closed", "view": modal, "user": {"id": "U1"}},
    ]


def body(rng: random.Random) -> tuple[bytes, str]:
    roll = rng.random()
    if roll < 0.1:
        return rng.randbytes(rng.randint(0, 600)), rng.choice(CONTENT_TYPES)
    if roll < 0.3:
        form: dict[str, Any] = slash_command(
            rng.choice(["", "help", "status", "list", "logs x", "cancel", "retry ab"]),
            trigger_id="t",
        )
        for _ in range(rng.randint(1, 3)):
            key = rng.choice([*form, "payload", "command", "x" * rng.randint(1, 50)])
            if rng.random() < 0.3:
                form.pop(key, None)
            else:
                form[key] = json.dumps(wrong_value(rng))[:500]
        return urlencode(form).encode(), rng.choice([FORM, FORM, "application/json", ""])
    payload = mutate(rng, rng.choice(payloads(rng)))
    for _ in range(rng.randint(0, 2)):
        payload = mutate(rng, payload)
    text = json.dumps(payload)
    if rng.random() < 0.1:  # cut short: not JSON any more
        text = text[: rng.randint(0, len(text))]
    if rng.random() < 0.5:
        return urlencode({"payload": text}).encode(), FORM
    return text.encode(), rng.choice(["application/json", "application/json", FORM])


def bad_signature(rng: random.Random, content: bytes) -> dict[str, Any]:
    good = sign(content)
    return rng.choice(
        [
            {},
            {"X-Slack-Request-Timestamp": good["X-Slack-Request-Timestamp"]},
            good | {"X-Slack-Signature": "v0=" + "0" * 64},
            good | {"X-Slack-Request-Timestamp": str(rng.randint(-(10**20), 10**20))},
            sign(content, timestamp=int(time.time()) - 3600),
            sign(content, secret="not-the-secret"),
            good
            | {
                "X-Slack-Request-Timestamp": rng.choice(
                    ["", "abc", "1e9", "+1", "0x10", "١٢".encode()]
                )
            },
        ]
    )


def job_ref(rng: random.Random) -> str:
    alphabet = rng.choice(
        ["0123456789abcdef", "ghijklmnop", "%/.\\-_ ", "éü\u202e\u0000\ud7ff", "aA0"]
    )
    length = rng.choice([0, 1, 8, 12, 16, 32, 33, 64, 500, 5000, 60_000])
    return "".join(rng.choice(alphabet) for _ in range(length))


def timed(client: httpx.Client, method: str, url: str, what: str, **send: Any) -> httpx.Response:
    started = time.monotonic()
    response = client.request(method, url, **send)
    elapsed = time.monotonic() - started
    assert elapsed < SLOW, (what, elapsed)
    assert response.status_code < 500, (what, response.status_code, response.text[:300])
    return response


def test_thousands_of_malformed_requests_get_no_5xx_no_hang_and_no_traceback(
    served: Served,
) -> None:
    rng = random.Random(SEED)
    events = served.base + "/slack/events"
    with httpx.Client(timeout=SLOW + 5) as client:
        client.get(served.base + "/healthz")
        timed(client, "POST", events, "warm", content=b"warm-up", headers=sign(b"warm-up"))
        before = served.memory()
        statuses: dict[int, int] = {}
        for number in range(EVENTS_REQUESTS):
            content, content_type = body(rng)
            signed = number % 2 == 0
            headers = {"Content-Type": content_type} if content_type else {}
            headers |= sign(content) if signed else bad_signature(rng, content)
            what = f"events #{number} signed={signed}: {content[:200]!r}"
            response = timed(client, "POST", events, what, content=content, headers=headers)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if not signed:
                assert response.status_code in {400, 401}, (what, response.status_code)
        for number in range(STATUS_REQUESTS):
            ref = job_ref(rng)
            auth = rng.choice(
                [{"Authorization": f"Bearer {API_TOKEN}"}] * 2
                + [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}]
            )
            # httpx refuses URLs over 64 KiB; a cut escape is one more malformed id.
            url = f"{served.base}/api/training-jobs/{quote(ref, safe='')[:60_000]}/status"
            what = f"status #{number}: {ref[:80]!r} {auth}"
            response = timed(client, "GET", url, what, headers=auth)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        growth = served.memory() - before
    assert growth < RSS_GROWTH, (growth, statuses)
    assert 200 in statuses and 400 in statuses and 401 in statuses, statuses
    served.assert_healthy()
    assert "Traceback" not in served.log(), served.log()[-5000:]
