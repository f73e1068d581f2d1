"""UrlGuard.fetch against a real HTTP server on 127.0.0.1.

Only the loopback server is ever connected to: redirects to other addresses must be
refused by the guard before any connection is made.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pipeline.errors import FetchError, UnsafeURLError
from pipeline.netguard import MAX_REDIRECTS, UrlGuard
from tests.support.http_server import (
    LoopbackServer,
    RecordedRequest,
    Reply,
    loopback_server,
    redirect,
)

LOOPBACK_ONLY = [ipaddress.ip_network("127.0.0.1/32")]
CSV = "a,b\n1,2\n3,4\n"


def pinned_resolver(table: dict[str, str]) -> Any:
    """A resolver that must never be asked about anything outside `table`."""

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host not in table:
            raise AssertionError(f"unexpected DNS lookup of {host!r}")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port))]

    return resolve


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with loopback_server() as srv:
        yield srv


@pytest.fixture
def guard() -> UrlGuard:
    return UrlGuard(resolver=pinned_resolver({}), extra_allowed_networks=LOOPBACK_ONLY)


def test_fetch_returns_body_status_and_type(server: LoopbackServer, guard: UrlGuard) -> None:
    server.routes["/data.csv"] = Reply(body=CSV, content_type="text/csv; charset=utf-8")
    response = guard.fetch(server.url("/data.csv"), max_bytes=1000)
    assert response.status == 200
    assert response.content == CSV.encode()
    assert response.media_type == "text/csv"
    assert response.charset == "utf-8"
    assert response.url == response.final_url == server.url("/data.csv")


def test_fetch_connects_to_the_checked_address_and_sends_the_real_host(
    server: LoopbackServer,
) -> None:
    # "data.example" resolves once, to loopback; the request goes to that address with
    # the original Host header, so a second (rebinding) DNS answer is never used.
    lookups: list[str] = []
    table = pinned_resolver({"data.example": "127.0.0.1"})

    def counting(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        lookups.append(host)
        return table(host, port)

    guard = UrlGuard(resolver=counting, extra_allowed_networks=LOOPBACK_ONLY)
    server.routes["/data.csv"] = Reply(body=CSV)
    response = guard.fetch(f"http://data.example:{server.port}/data.csv", max_bytes=1000)
    assert response.content == CSV.encode()
    assert lookups == ["data.example"]
    assert server.requests[-1].headers["Host"] == f"data.example:{server.port}"


def test_relative_redirects_are_followed(server: LoopbackServer, guard: UrlGuard) -> None:
    server.routes["/old"] = redirect("/new")
    server.routes["/new"] = redirect(server.url("/final"), status=301)
    server.routes["/final"] = Reply(body="here")
    response = guard.fetch(server.url("/old"), max_bytes=100)
    assert response.content == b"here"
    assert response.final_url == server.url("/final")
    assert server.paths_requested() == ["/old", "/new", "/final"]


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
        "http://[::ffff:169.254.169.254]/",
        "file:///etc/passwd",
    ],
)
def test_redirect_to_a_non_public_target_is_refused_before_connecting(
    server: LoopbackServer, guard: UrlGuard, target: str
) -> None:
    server.routes["/go"] = redirect(target)
    started = time.monotonic()
    with pytest.raises(UnsafeURLError) as caught:
        guard.fetch(server.url("/go"), max_bytes=100, timeout=5)
    # Refused at once: a connection attempt to an unroutable address would hang or fail
    # with a FetchError instead.
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert "redirected" in message
    assert server.url("/go") in message
    assert server.paths_requested() == ["/go"]


def test_redirect_to_a_name_resolving_privately_is_refused(server: LoopbackServer) -> None:
    guard = UrlGuard(
        resolver=pinned_resolver({"internal.example": "10.1.1.1"}),
        extra_allowed_networks=LOOPBACK_ONLY,
    )
    server.routes["/go"] = redirect("http://internal.example/admin")
    with pytest.raises(
        UnsafeURLError, match=r"resolves to a private network address \(10\.1\.1\.1\)"
    ):
        guard.fetch(server.url("/go"), max_bytes=100)


def test_redirect_loops_are_capped(server: LoopbackServer, guard: UrlGuard) -> None:
    server.routes["/a"] = redirect("/b")
    server.routes["/b"] = redirect("/a")
    with pytest.raises(FetchError, match=f"redirected more than {MAX_REDIRECTS} times"):
        guard.fetch(server.url("/a"), max_bytes=100)
    assert len(server.requests) == MAX_REDIRECTS + 1


def test_body_over_the_limit_with_content_length_is_refused(
    server: LoopbackServer, guard: UrlGuard
) -> None:
    server.routes["/big"] = Reply(body=b"x" * 5000)
    with pytest.raises(FetchError, match="larger than the 1 KB limit"):
        guard.fetch(server.url("/big"), max_bytes=1000)
    assert guard.fetch(server.url("/big"), max_bytes=5000).content == b"x" * 5000


def test_body_over_the_limit_without_content_length_is_cut_off(
    server: LoopbackServer, guard: UrlGuard
) -> None:
    server.routes["/stream"] = Reply(body=b"y" * 200_000, send_length=False, chunks=20)
    with pytest.raises(FetchError, match="larger than"):
        guard.fetch(server.url("/stream"), max_bytes=10_000)
    server.routes["/small"] = Reply(body=b"z" * 3000, send_length=False, chunks=3)
    assert guard.fetch(server.url("/small"), max_bytes=3000).content == b"z" * 3000


def test_a_server_that_does_not_answer_times_out(server: LoopbackServer, guard: UrlGuard) -> None:
    server.routes["/slow"] = Reply(body="late", delay=5)
    started = time.monotonic()
    with pytest.raises(FetchError, match=r"did not answer within 0\.3 s"):
        guard.fetch(server.url("/slow"), max_bytes=100, timeout=0.3)
    assert time.monotonic() - started < 3


def test_a_download_that_drips_past_the_total_deadline_is_stopped(
    server: LoopbackServer, guard: UrlGuard
) -> None:
    server.routes["/drip"] = Reply(body=b"d" * 100, chunks=100, chunk_delay=0.1)
    started = time.monotonic()
    with pytest.raises(FetchError, match="took longer than 0.5 s"):
        guard.fetch(server.url("/drip"), max_bytes=1000, timeout=1, total_timeout=0.5)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize(("status", "phrase"), [(404, "Not Found"), (500, "Internal Server Error")])
def test_http_errors_name_the_status(
    server: LoopbackServer, guard: UrlGuard, status: int, phrase: str
) -> None:
    server.routes["/x"] = Reply(status=status, body="nope")
    with pytest.raises(FetchError, match=f"answered HTTP {status} {phrase}"):
        guard.fetch(server.url("/x"), max_bytes=100)


def test_nothing_listening_is_a_fetch_error(guard: UrlGuard) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(FetchError, match="Could not connect to 127.0.0.1"):
        guard.fetch(f"http://127.0.0.1:{port}/", max_bytes=100, timeout=2)


def test_default_guard_refuses_the_loopback_server(server: LoopbackServer) -> None:
    server.routes["/data.csv"] = Reply(body=CSV)
    with pytest.raises(UnsafeURLError, match="loopback address"):
        UrlGuard().fetch(server.url("/data.csv"), max_bytes=1000)
    assert server.requests == []


def test_routes_can_be_computed(server: LoopbackServer, guard: UrlGuard) -> None:
    def echo_accept(_srv: LoopbackServer, request: RecordedRequest) -> Reply:
        return Reply(body=request.headers.get("Accept", ""))

    server.routes["/accept"] = echo_accept
    response = guard.fetch(server.url("/accept"), max_bytes=100, accept="text/csv")
    assert response.content == b"text/csv"


@pytest.mark.parametrize(
    "location",
    [
        "http://[::1",
        "http://xn--zz/",
        "//xn--a.example/x.csv",
        "http:\\\\127.0.0.1:8/x",
        "/files\\data.csv",
        "http://data.example:99999/",
    ],
)
def test_redirect_to_a_malformed_address_is_refused_by_the_guard(
    server: LoopbackServer, guard: UrlGuard, location: str
) -> None:
    # The guard parses each Location itself; the HTTP library never reads it, so a link it
    # cannot parse is the guard's plain message, not the library's URL error.
    server.routes["/bad"] = redirect(location)
    with pytest.raises(FetchError) as caught:
        guard.fetch(server.url("/bad"), max_bytes=100, timeout=5)
    message = str(caught.value)
    assert message.startswith(f"{server.url('/bad')} redirected to an invalid address"), message
    assert "link to the file itself" in message
    assert server.paths_requested() == ["/bad"]
