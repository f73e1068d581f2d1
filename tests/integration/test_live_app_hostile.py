"""The live app refuses hostile and careless requests with a JSON 4xx, quickly, and lives on.

Each request goes to the real template app.py over a real socket, most of them written by
hand because no client library sends them: a made-up method, a 70 KB header, a body shorter
than its Content-Length. The last test throws a few thousand malformed bodies at /predict.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pipeline.codegen import contract
from tests.support.template_runner import (
    LiveApp,
    RawResponse,
    live_app,
    messy_frame,
    prepare_workdir,
    train_ok,
)

TARGET = "Churned?"
ROW = {
    "Customer ID": "C-99999",
    "Signup Date": "2021-07-04",
    "Monthly Income ($)": 4200.5,
    "  Plan Type ": "Basic",
    "Support Calls #": 6,
    "Is Student": False,
    "Region": "North",
}
QUICK = 5.0  # seconds: every answer but the 408 (which waits for the read timeout) is quicker


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The messy churn data: number, category, date and bool features, so every converter runs."""
    workdir = tmp_path_factory.mktemp("hostile")
    prepare_workdir(workdir, messy_frame(), target=TARGET, task="classification")
    train_ok(workdir)
    return workdir


@pytest.fixture(scope="module")
def app(workdir: Path) -> Iterator[LiveApp]:
    with live_app(workdir) as running:
        yield running


def request(method: str, path: str, body: bytes = b"", /, **headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: app", *(f"{k}: {v}" for k, v in headers.items())]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def post(body: bytes) -> bytes:
    return request("POST", "/predict", body, **{"Content-Type": "application/json"})


def assert_json_refusal(
    response: RawResponse, status: int, *fragments: str, within: float = QUICK
) -> str:
    assert response.status == status, (response.status, response.body[:300])
    assert response.headers.get("Content-Type", "").startswith("application/json"), response
    error = response.json()["error"]
    assert isinstance(error, str) and "Traceback" not in error
    for fragment in fragments:
        assert fragment in error, error
    assert response.seconds < within, response.seconds
    return error


def assert_healthy(app: LiveApp) -> None:
    assert app.process.poll() is None, "the app exited"
    assert app.get("/health").status == 200
    assert app.predict([ROW]).status == 200


def nested(depth: int) -> bytes:
    return b'{"rows": [' + b"[" * depth + b"]" * depth + b"]}"


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        # 400 digits overflow a float; 5,000 pass Python's 4,300-digit int-parsing limit.
        (
            json.dumps({"rows": [{**ROW, "Support Calls #": int("9" * 400)}]}).encode(),
            ["digits", str(contract.MAX_INT_DIGITS)],
        ),
        (
            b'{"rows": [{"Support Calls #": ' + b"7" * 5000 + b"}]}",
            ["digits", str(contract.MAX_INT_DIGITS)],
        ),
        (
            json.dumps({"rows": [{**ROW, "  Plan Type ": int("1" * 150)}]}).encode(),
            ["digits"],
        ),
        (nested(5000), ["nested", str(contract.MAX_JSON_DEPTH)]),
        (nested(contract.MAX_JSON_DEPTH + 1), ["nested"]),
        (b'{"rows": [{"Region": ' + b"[" * 900 + b"]" * 900 + b"}]}", ["nested"]),
    ],
    ids=["400 digits", "5000 digits", "long int category", "5000 deep", "just too deep", "900"],
)
def test_huge_numbers_and_deep_nesting_are_400s(
    app: LiveApp, body: bytes, fragments: list[str]
) -> None:
    assert_json_refusal(app.raw(post(body)), 400, *fragments)
    assert_healthy(app)


def test_a_body_over_the_cap_is_a_413_without_being_read(app: LiveApp) -> None:
    claimed = request("POST", "/predict", **{"Content-Length": str(10**9)})
    assert_json_refusal(app.raw(claimed), 413, "too big", "1 MB")
    big = post(b'{"rows": [' + b" " * contract.MAX_BODY_BYTES + b"]}")
    assert_json_refusal(app.raw(big), 413, "too big")
    assert_healthy(app)


def test_too_many_rows_is_a_400_naming_the_cap(app: LiveApp) -> None:
    body = json.dumps({"rows": [ROW] * (contract.MAX_ROWS + 1)}).encode()
    assert_json_refusal(app.raw(post(body)), 400, "too many rows", str(contract.MAX_ROWS))
    assert app.predict([ROW] * contract.MAX_ROWS).status == 200


def test_a_body_shorter_than_its_content_length_is_a_quick_408(app: LiveApp) -> None:
    short = request("POST", "/predict", b'{"rows": ', **{"Content-Length": "100"})
    response = app.raw(short, timeout=QUICK + 5)
    assert_json_refusal(response, 408, "in time", within=contract.READ_TIMEOUT_SECONDS + 2)
    assert response.seconds > contract.READ_TIMEOUT_SECONDS - 1  # it did wait for the rest
    assert_healthy(app)


def test_a_body_that_ends_early_is_a_400(app: LiveApp) -> None:
    short = request("POST", "/predict", b'{"rows": ', **{"Content-Length": "100"})
    response = app.raw(short, keep_open=False)
    assert_json_refusal(response, 400, "ended after 9 of the 100 bytes")


# ---------------------------------------------------------------- the request line and headers


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("TRACE", "/predict", "POST"),
        ("BREW", "/", "GET, HEAD, POST"),
        ("get", "/health", "GET, HEAD"),
        ("M" * 300, "/schema", "GET, HEAD"),
    ],
    ids=["TRACE", "made up", "lower case", "long"],
)
def test_unknown_methods_are_json_405s_with_allow(
    app: LiveApp, method: str, path: str, allow: str
) -> None:
    response = app.raw(request(method, path, b"{}"))
    error = assert_json_refusal(response, 405, "not allowed")
    assert response.headers["Allow"] == allow
    assert len(error) < 300  # a long method is not echoed whole
    assert_healthy(app)


def test_an_unknown_method_on_an_unknown_path_is_a_json_404(app: LiveApp) -> None:
    assert_json_refusal(app.raw(request("BREW", "/coffee")), 404, "no such page")


@pytest.mark.parametrize(
    ("data", "status", "fragment"),
    [
        (request("GET", "/health", **{"X-Big": "a" * 70_000}), 431, "header"),
        (
            request("GET", "/health", **{f"X-{i}": "1" for i in range(150)}),
            431,
            "header",
        ),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", 414, "too long"),
        (b"GARBAGE\r\n\r\n", 400, "malformed"),
        (b"GET / HTTP/1.1 extra\r\n\r\n", 400, "malformed"),
        (b"GET / FTP/1.0\r\n\r\n", 400, "malformed"),
        (b"GET / HTTP/2.0\r\n\r\n", 505, "HTTP/1.1"),
        (b"POST /predict\r\n\r\n", 400, "malformed"),
    ],
    ids=[
        "long header",
        "many headers",
        "long URI",
        "one word",
        "four words",
        "bad version",
        "HTTP/2",
        "HTTP/0.9 POST",
    ],
)
def test_malformed_request_lines_and_headers_get_json(
    app: LiveApp, data: bytes, status: int, fragment: str
) -> None:
    error = assert_json_refusal(app.raw(data), status, fragment)
    assert len(error) < 300
    assert_healthy(app)


@pytest.mark.parametrize(
    ("content_length", "fragment"),
    [("abc", "not a number"), ("1_0", "not a number"), ("-5", "not a number"), ("٣", "number")],
)
def test_a_bad_content_length_is_a_400(app: LiveApp, content_length: str, fragment: str) -> None:
    data = request("POST", "/predict", **{"Content-Length": content_length})
    assert_json_refusal(app.raw(data.replace(b"Content-Length: 0\r\n", b"")), 400, fragment)


# ---------------------------------------------------------------- fuzz

FUZZ_CASES = 3000
FUZZ_SEED = 20240531
MEMORY_GROWTH_KB = 150_000  # peak resident memory may grow this much over the run, no more


def random_scalar(rng: random.Random) -> Any:
    choice = rng.randrange(12)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.randint(-(10**6), 10**6)
    if choice == 3:
        return rng.uniform(-1e6, 1e6)
    if choice == 4:
        return rng.choice(["1e309", "-1e999", "NaN", "inf", "0x10", "1_000", " 4 ", "", "   "])
    if choice == 5:
        return rng.choice(["2021-02-30", "0001-01-01", "9999-12-31T99:00", "now", "3/15/2022"])
    if choice == 6:
        return rng.choice(["yes", "no", "maybe", "TRUE", "0", "1", "on"])
    if choice == 7:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(0, 40)))
    if choice == 8:
        return "x" * rng.choice([1000, 100_000])
    if choice == 9:
        return rng.choice(["Basic", "Plus", "Premium", "Enterprise", "North", "West"])
    if choice == 10:
        return [random_scalar(rng)]
    return {"k": random_scalar(rng)}


def random_row(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return random_scalar(rng)
    row: dict[str, Any] = dict(ROW)
    for key in rng.sample(list(ROW), rng.randrange(0, 4)):
        choice = rng.randrange(4)
        if choice == 0:
            del row[key]
        elif choice == 1:
            row[key.upper()] = random_scalar(rng)
        else:
            row[key] = random_scalar(rng)
    if rng.random() < 0.1:
        row["".join(rng.choice("ab ?é") for _ in range(5))] = 1
    return row


def raw_number(rng: random.Random) -> bytes:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.choice([50, 120, 400, 5000])))
    forms = [digits, "-" + digits, digits + ".5", "1e" + digits[:7], "0." + digits + "e-99999"]
    return rng.choice(forms).encode()


def mutate(body: bytes, rng: random.Random) -> bytes:
    """Byte-level damage to a valid body: cut, flip, insert, repeat."""
    data = bytearray(body)
    for _ in range(rng.randrange(1, 6)):
        if not data:
            break
        at = rng.randrange(len(data))
        choice = rng.randrange(5)
        if choice == 0:
            del data[at:]
        elif choice == 1:
            data[at] = rng.randrange(256)
        elif choice == 2:
            data[at:at] = rng.choice([b"[", b"{", b'"', b"\\", b"\x00", b"\xff", b"NaN", b","])
        elif choice == 3:
            data[at:at] = raw_number(rng)
        else:
            data[at:at] = data[at : at + rng.randrange(1, 20)] * rng.randrange(2, 50)
    return bytes(data)


def fuzz_body(rng: random.Random) -> bytes:
    choice = rng.randrange(8)
    if choice == 0:  # random bytes
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    if choice == 1:  # a huge number where a value goes
        return b'{"rows": [{"Support Calls #": ' + raw_number(rng) + b"}]}"
    if choice == 2:  # nesting at some depth, closed or not
        depth = rng.choice([5, 19, 20, 21, 100, 999, 1000, 3000, 20_000])
        opener = rng.choice([b"[", b'{"a":'])
        closer = b"]" if opener == b"[" else b"}"
        tail = closer * depth if rng.random() < 0.7 else b""
        return b'{"rows": ' + opener * depth + tail + b"}"
    if choice == 3:  # rows of odd shapes and counts
        count = rng.choice([0, 1, 3, 50, contract.MAX_ROWS, contract.MAX_ROWS + 1])
        return json.dumps({"rows": [random_row(rng) for _ in range(count)]}).encode()
    if choice == 4:  # not an object, or no rows
        shapes = [[ROW], "rows", 3, None, {"row": [ROW]}, {"rows": None}]
        return json.dumps(rng.choice(shapes)).encode()
    body = json.dumps({"rows": [random_row(rng) for _ in range(rng.randrange(1, 5))]}).encode()
    return mutate(body, rng)


def send(app: LiveApp, body: bytes) -> tuple[int, float, bytes]:
    response = app.raw(post(body), timeout=QUICK + 5, keep_open=False)
    return response.status, response.seconds, response.body[:200]


def test_thousands_of_malformed_bodies_get_no_5xx_quickly_in_bounded_memory(
    app: LiveApp, workdir: Path
) -> None:
    rng = random.Random(FUZZ_SEED)
    bodies = [fuzz_body(rng) for _ in range(FUZZ_CASES)]
    bodies += [b'{"rows": [' + b"[" * 400_000 + b"]}", b"[" * 999_000]  # the biggest allowed
    assert_healthy(app)
    start_rss, _ = app.rss_kb
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda body: send(app, body), bodies))
    failures = [
        (status, round(seconds, 2), body[:80], answer)
        for (status, seconds, answer), body in zip(results, bodies, strict=True)
        if not 200 <= status < 500 or seconds > QUICK
    ]
    assert not failures, f"{len(failures)} bad answers, first: {failures[:5]}"
    assert {status for status, _, _ in results} >= {200, 400}
    _, peak_rss = app.rss_kb
    assert peak_rss - start_rss < MEMORY_GROWTH_KB, (start_rss, peak_rss)
    assert_healthy(app)
    assert "Traceback" not in (workdir / "app.log").read_text()
