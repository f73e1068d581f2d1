"""Reference links: text extraction and warnings, with a fake fetcher (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.errors import FetchError, UnsafeURLError
from pipeline.limits import MAX_RESOURCES
from pipeline.netguard import FetchedResponse, UrlGuard
from pipeline.stages.resources import (
    collapse_whitespace,
    extract_text,
    fetch_resources,
    html_to_text,
    trim,
)

PAGE = """<!doctype html><html><head><title>Churn notes</title>
<style>body { color: red }</style><script>var secret = "hidden";</script></head>
<body><nav>Home</nav><h1>Predicting   churn</h1>
<p>Customers with <b>month-to-month</b> contracts churn more &amp; faster.</p>
<noscript>Enable JavaScript</noscript><svg><text>chart label</text></svg>
<table><tr><td>tenure</td><td>months</td></tr></table></body></html>"""


def response(body: bytes | str, content_type: str, url: str = "https://ex.com/") -> FetchedResponse:
    data = body.encode() if isinstance(body, str) else body
    return FetchedResponse(url, url, 200, content_type, data)


class FakeGuard(UrlGuard):
    """Answers from a table: a FetchedResponse, or an exception to raise."""

    def __init__(self, table: dict[str, FetchedResponse | Exception]) -> None:
        super().__init__()
        self.table = table
        self.calls: list[dict[str, Any]] = []

    def fetch(self, url: str, **kwargs: Any) -> FetchedResponse:  # type: ignore[override]
        self.calls.append({"url": url, **kwargs})
        answer = self.table[url]
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_html_becomes_visible_text_only() -> None:
    text = collapse_whitespace(html_to_text(PAGE))
    assert "Churn notes" in text
    assert "Predicting churn" in text
    assert "Customers with month-to-month contracts churn more & faster." in text
    assert "tenure months" in text
    for hidden in ("color: red", "secret", "Enable JavaScript", "chart label"):
        assert hidden not in text


@pytest.mark.parametrize(
    "content_type", ["text/plain", "text/markdown; charset=utf-8", "text/csv", "application/json"]
)
def test_text_types_are_kept_as_text(content_type: str) -> None:
    body = '{"a":   1}' if "json" in content_type else "# Title\n\n\n  some    notes  \n"
    text = extract_text(response(body, content_type))
    assert text == ('{\n"a": 1\n}' if "json" in content_type else "# Title\nsome notes")


def test_untyped_html_is_detected() -> None:
    assert extract_text(response(PAGE, "")).startswith("Churn notes")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"%PDF-1.7 ...", "application/pdf"), (b"\x89PNG", "image/png"), (b"PK\x03\x04\x00", "")],
)
def test_binary_content_is_refused(body: bytes, content_type: str) -> None:
    guard = FakeGuard({"https://ex.com/f": response(body, content_type)})
    result = fetch_resources(["https://ex.com/f"], guard=guard)
    assert result.resources == []
    assert len(result.warnings) == 1
    assert "https://ex.com/f" in result.warnings[0]


def test_latin1_charset_is_honoured() -> None:
    body = "Café crème".encode("latin-1")
    assert extract_text(response(body, "text/plain; charset=iso-8859-1")) == "Café crème"


def test_trim_respects_the_budget() -> None:
    text = "word " * 10_000
    trimmed = trim(text, 1000)
    assert len(trimmed) <= 1000
    assert trimmed.endswith("…")
    assert trim("short", 1000) == "short"


def test_one_good_and_one_bad_link() -> None:
    good, bad = "https://docs.example.com/guide", "https://gone.example.com/x"
    guard = FakeGuard(
        {
            good: response(PAGE, "text/html; charset=utf-8", good),
            bad: FetchError(f"{bad} answered HTTP 404 Not Found; check the link."),
        }
    )
    published: list[tuple[str, str]] = []
    result = fetch_resources(
        [good, bad], guard=guard, publish=lambda kind, msg: published.append((kind, msg))
    )
    assert [r.url for r in result.resources] == [good]
    assert "month-to-month" in result.resources[0].text
    assert result.warnings == [
        f"Reference link skipped: {bad} answered HTTP 404 Not Found; check the link."
    ]
    assert [kind for kind, _ in published] == ["progress"]
    assert good in published[0][1]
    assert all(call["timeout"] == 10.0 for call in guard.calls)


def test_unsafe_link_is_a_warning_not_an_exception() -> None:
    url = "http://10.0.0.5/notes"
    guard = FakeGuard({url: UnsafeURLError(f"{url} points at a private network address.")})
    result = fetch_resources([url], guard=guard)
    assert result.resources == []
    assert "private network address" in result.warnings[0]


def test_each_resource_is_trimmed_to_its_budget() -> None:
    url = "https://ex.com/long.txt"
    guard = FakeGuard({url: response("lorem ipsum " * 10_000, "text/plain", url)})
    result = fetch_resources([url], guard=guard, max_chars=500)
    assert len(result.resources[0].text) <= 500


def test_duplicates_and_extra_links_are_dropped_with_a_warning() -> None:
    urls = [f"https://ex.com/{i}" for i in range(MAX_RESOURCES + 2)]
    guard = FakeGuard({u: response("text", "text/plain", u) for u in urls})
    result = fetch_resources([urls[0], *urls, " "], guard=guard)
    assert [r.url for r in result.resources] == urls[:MAX_RESOURCES]
    assert len(result.warnings) == 2
    assert len(guard.calls) == MAX_RESOURCES


def test_empty_page_is_a_warning() -> None:
    url = "https://ex.com/app"
    page = "<html><body><script>render()</script></body></html>"
    result = fetch_resources([url], guard=FakeGuard({url: response(page, "text/html", url)}))
    assert result.resources == []
    assert "no readable text" in result.warnings[0]


def test_an_unexpected_error_is_still_only_a_warning() -> None:
    url = "https://ex.com/odd"
    result = fetch_resources([url], guard=FakeGuard({url: RuntimeError("boom")}))
    assert result.warnings == [f"Reference link skipped: {url} could not be read."]
