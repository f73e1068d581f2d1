"""UrlGuard.check: schemes and addresses, with a fake resolver (no DNS, no connections)."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from pipeline.errors import FetchError, UnsafeURLError
from pipeline.netguard import UrlGuard, blocked_reason


class FakeResolver:
    """getaddrinfo over a fixed table; records every name it is asked about."""

    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def __call__(self, host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        self.asked.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for address in self.table[host]:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            out.append((family, socket.SOCK_STREAM, 6, "", (address, port)))
        return out


def guard_with(table: Mapping[str, Sequence[str]] | None = None, **kwargs: Any) -> UrlGuard:
    return UrlGuard(resolver=FakeResolver(table or {}), **kwargs)


BLOCKED_LITERALS = [
    ("http://127.0.0.1/", "loopback"),
    ("http://127.1.2.3:8080/x", "loopback"),
    ("http://10.0.0.5/data.csv", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.254/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://169.254.169.254/latest/meta-data", "metadata"),
    ("http://169.254.1.1/", "link-local"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://255.255.255.255/", "address"),
    ("http://[::1]/", "loopback"),
    ("http://[::]/", "unspecified"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://[fc00::1]/", "unique-local"),
    ("http://[fd12:3456::1]/", "unique-local"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[::127.0.0.1]/", "loopback"),  # IPv4-compatible
    ("http://[64:ff9b::10.0.0.1]/", "private"),  # NAT64
    ("http://[2002:7f00:1::]/", "loopback"),  # 6to4 of 127.0.0.1
    ("http://[2002:a9fe:a9fe::]/", "metadata"),  # 6to4 of 169.254.169.254
]


@pytest.mark.parametrize(("url", "reason"), BLOCKED_LITERALS)
def test_non_public_literal_addresses_are_rejected(url: str, reason: str) -> None:
    resolver = FakeResolver({})
    guard = UrlGuard(resolver=resolver)
    with pytest.raises(UnsafeURLError) as caught:
        guard.check(url)
    message = str(caught.value)
    assert reason in message
    assert "TRAINBOT_ALLOW_PRIVATE_URLS" in message
    assert resolver.asked == []  # literal addresses are never looked up


def test_message_names_url_and_address_and_what_to_do() -> None:
    with pytest.raises(UnsafeURLError) as caught:
        guard_with().check("https://10.0.0.5/data.csv")
    assert str(caught.value) == (
        "https://10.0.0.5/data.csv points at a private network address (10.0.0.5); "
        "TrainBot only fetches public http(s) URLs. Upload the file instead, "
        "or set TRAINBOT_ALLOW_PRIVATE_URLS=1 for local use."
    )


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("10.1.2.3", "10.1.2.3"),
        ("169.254.169.254", "169.254.169.254"),
        ("::1", "::1"),
        ("fd00::1", "fd00::1"),
        ("::ffff:192.168.0.1", "192.168.0.1"),
    ],
)
def test_names_resolving_to_non_public_addresses_are_rejected(address: str, shown: str) -> None:
    guard = guard_with({"data.example.com": [address]})
    with pytest.raises(UnsafeURLError, match=r"resolves to a .*" + re.escape(shown) + r"\)"):
        guard.check("https://data.example.com/file.csv")


def test_one_private_address_among_public_ones_rejects_the_name() -> None:
    guard = guard_with({"mixed.example.com": ["93.184.216.34", "10.0.0.7"]})
    with pytest.raises(UnsafeURLError, match=r"10\.0\.0\.7"):
        guard.check("https://mixed.example.com/")


def test_public_addresses_are_accepted_and_returned() -> None:
    guard = guard_with({"example.com": ["93.184.216.34", "2606:2800:220:1::1"]})
    assert guard.check("https://example.com/data.csv") == [
        ipaddress.ip_address("93.184.216.34"),
        ipaddress.ip_address("2606:2800:220:1::1"),
    ]
    assert guard.check("HTTP://8.8.8.8:8080/x") == [ipaddress.ip_address("8.8.8.8")]
    # A mapped or NAT64 form of a public address is as public as the address itself.
    assert guard.check("http://[::ffff:8.8.8.8]/") == [ipaddress.ip_address("::ffff:8.8.8.8")]


def test_integer_host_forms_are_resolved_and_then_checked() -> None:
    # getaddrinfo turns "2130706433" into 127.0.0.1; the answer is what gets checked.
    guard = guard_with({"2130706433": ["127.0.0.1"]})
    with pytest.raises(UnsafeURLError, match="loopback"):
        guard.check("http://2130706433/")


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/data.csv",
        "gopher://example.com:70/_GET",
        "javascript:alert(1)",
        "data:text/csv,a,b",
        "example.com/data.csv",
    ],
)
def test_only_http_and_https_are_allowed(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="only fetches public http"):
        guard_with({"example.com": ["93.184.216.34"]}).check(url)


@pytest.mark.parametrize("url", ["http:///data.csv", "https://", "http://:80/"])
def test_a_host_is_required(url: str) -> None:
    with pytest.raises(UnsafeURLError, match="no host name"):
        guard_with().check(url)


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("http://xn--zz/", "xn--zz"),
        ("https://xn--a.example/data.csv", "xn--a"),
        ("http://data.xn--zz.example:8080/a.csv", "xn--zz"),
        ("http://XN--ZZ.example/", "xn--zz"),
        ("http://xn--/", "xn--"),
    ],
)
def test_malformed_internationalised_names_are_the_guards_own_error(url: str, label: str) -> None:
    resolver = FakeResolver({})
    with pytest.raises(UnsafeURLError) as caught:
        UrlGuard(resolver=resolver).check(url)
    message = caught.value.message
    assert message.startswith(f"{url} is not a valid link")
    assert f"{label} is not a valid internationalised (xn--) name" in message
    assert resolver.asked == []  # refused before any DNS lookup


def test_well_formed_internationalised_names_are_resolved_in_their_ascii_form() -> None:
    guard = guard_with({"xn--ida.example": ["93.184.216.34"]})
    for url in ("https://xn--ida.example/a.csv", "https://ñ.example/a.csv"):
        assert guard.check(url) == [ipaddress.ip_address("93.184.216.34")]


@pytest.mark.parametrize(
    "url",
    [
        "http:\\\\127.0.0.1:8/x",
        "http://example.com\\@127.0.0.1/",
        "https://example.com/a\\b.csv",
        "https://example.com/a\tb.csv",
        "https://exa\x00mple.com/",
    ],
)
def test_backslashes_and_control_characters_are_refused(url: str) -> None:
    # Browsers read "\" as "/" and drop tabs; refusing them means no parser can read the
    # link differently from the guard.
    resolver = FakeResolver({"example.com": ["93.184.216.34"]})
    with pytest.raises(UnsafeURLError, match="is not a valid link") as caught:
        UrlGuard(resolver=resolver).check(url)
    assert "\x00" not in caught.value.message and "\t" not in caught.value.message
    assert resolver.asked == []


def test_unknown_name_is_a_fetch_error_not_a_crash() -> None:
    with pytest.raises(FetchError, match="Could not find the server nope.invalid"):
        guard_with().check("https://nope.invalid/data.csv")


def test_allow_private_lifts_address_rules_only() -> None:
    guard = guard_with({"intranet": ["10.0.0.9"]}, allow_private=True)
    assert guard.check("http://127.0.0.1:8000/") == [ipaddress.ip_address("127.0.0.1")]
    assert guard.check("http://169.254.169.254/") == [ipaddress.ip_address("169.254.169.254")]
    assert guard.check("http://intranet/data.csv") == [ipaddress.ip_address("10.0.0.9")]
    for url in ("file:///etc/passwd", "ftp://10.0.0.9/x", "http:///x"):
        with pytest.raises(UnsafeURLError):
            guard.check(url)


def test_extra_allowed_networks_allow_only_those_addresses() -> None:
    guard = guard_with(extra_allowed_networks=[ipaddress.ip_network("127.0.0.1/32")])
    assert guard.check("http://127.0.0.1:5000/") == [ipaddress.ip_address("127.0.0.1")]
    for url in ("http://127.0.0.2/", "http://10.0.0.1/", "http://[::1]/", "file:///x"):
        with pytest.raises(UnsafeURLError):
            guard.check(url)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700::1111", True),
        ("64:ff9b::808:808", True),
        ("192.0.2.1", False),  # documentation range
        ("198.18.0.1", False),  # benchmarking range
        ("2001:db8::1", False),
        ("64:ff9b:1::a00:1", False),  # local-use NAT64
        ("fec0::1", False),
    ],
)
def test_blocked_reason_edges(address: str, public: bool) -> None:
    assert (blocked_reason(ipaddress.ip_address(address)) is None) is public
