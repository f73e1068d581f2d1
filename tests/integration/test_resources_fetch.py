"""Reference links fetched from a real loopback server through the guard."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from pipeline.netguard import UrlGuard
from pipeline.stages.resources import fetch_resources
from tests.support.http_server import LoopbackServer, Reply, loopback_server, redirect

PAGE = (
    "<html><head><title>Guide</title><script>alert('x')</script></head>"
    "<body><h1>Feature notes</h1><p>Use <i>tenure</i> in months.</p></body></html>"
)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with loopback_server(
        {
            "/guide": Reply(body=PAGE, content_type="text/html; charset=utf-8"),
            "/notes.md": Reply(
                body="# Notes\n\nTarget is   churned.", content_type="text/markdown"
            ),
            "/to-metadata": redirect("http://169.254.169.254/latest/meta-data"),
            "/slow": Reply(body="late", delay=5),
            "/paper.pdf": Reply(body=b"%PDF-1.4 binary", content_type="application/pdf"),
        }
    ) as srv:
        yield srv


def loopback_guard() -> UrlGuard:
    return UrlGuard(extra_allowed_networks=[ipaddress.ip_network("127.0.0.1/32")])


def test_good_links_are_read_and_bad_ones_become_warnings(server: LoopbackServer) -> None:
    urls = [
        server.url("/guide"),
        server.url("/missing"),
        server.url("/notes.md"),
        server.url("/to-metadata"),
        server.url("/paper.pdf"),
    ]
    result = fetch_resources(urls, guard=loopback_guard())
    assert [r.url for r in result.resources] == [server.url("/guide"), server.url("/notes.md")]
    assert result.resources[0].text == "Guide\nFeature notes\nUse tenure in months."
    assert result.resources[1].text == "# Notes\nTarget is churned."
    assert len(result.warnings) == 3
    missing, metadata, pdf = result.warnings
    assert "404" in missing and server.url("/missing") in missing
    assert "169.254.169.254" in metadata
    assert "application/pdf" in pdf and server.url("/paper.pdf") in pdf


def test_slow_link_times_out_as_a_warning(server: LoopbackServer) -> None:
    result = fetch_resources([server.url("/slow")], guard=loopback_guard(), timeout=0.3)
    assert result.resources == []
    assert "did not answer within 0.3 s" in result.warnings[0]


def test_private_link_with_the_default_guard_is_a_warning(server: LoopbackServer) -> None:
    result = fetch_resources([server.url("/guide")], guard=UrlGuard())
    assert result.resources == []
    assert "loopback address" in result.warnings[0]
    assert server.requests == []
