"""Stage: read the reference links a user attached. Never fatal: problems become warnings."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser

from pipeline.codegen.base import Resource
from pipeline.errors import PipelineError
from pipeline.limits import MAX_RESOURCES
from pipeline.netguard import FetchedResponse, UrlGuard
from pipeline.stages.tabular import looks_like_html

logger = logging.getLogger(__name__)

MAX_BYTES = 2_000_000
MAX_CHARS = 20_000
TIMEOUT = 10.0

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
TEXT_TYPES = frozenset(
    {
        "text/plain",
        "text/markdown",
        "text/x-markdown",
        "text/csv",
        "text/tab-separated-values",
        "text/x-rst",
        "application/json",
        "application/ld+json",
        "application/x-yaml",
        "application/yaml",
        "text/yaml",
    }
)
# Sent without a useful type by many file hosts; accepted when the bytes are text.
UNTYPED = frozenset({"", "application/octet-stream", "binary/octet-stream"})

Publish = Callable[[str, str], None]


@dataclass(frozen=True)
class ResourcesResult:
    resources: list[Resource] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # one per skipped link, for the user


class _Unreadable(Exception):
    """A link was fetched but holds nothing we can read; the message is the reason."""


def fetch_resources(
    urls: list[str],
    *,
    guard: UrlGuard,
    publish: Publish | None = None,
    max_bytes: int = MAX_BYTES,
    max_chars: int = MAX_CHARS,
    timeout: float = TIMEOUT,
) -> ResourcesResult:
    """Fetch each link and extract its text; a failing link is skipped with a warning.

    `publish(kind, message)` is called with kind "progress" for each link read, so a
    caller can show progress; warnings are only returned, never published.
    """
    result = ResourcesResult()
    unique = list(dict.fromkeys(u.strip() for u in urls if u.strip()))
    for url in unique[MAX_RESOURCES:]:
        result.warnings.append(
            f"Reference link skipped: {url} (only the first {MAX_RESOURCES} links are read)."
        )
    for url in unique[:MAX_RESOURCES]:
        try:
            response = guard.fetch(
                url,
                max_bytes=max_bytes,
                timeout=timeout,
                total_timeout=timeout * 2,
                accept="text/html, text/plain, text/markdown, application/json;q=0.9, */*;q=0.5",
            )
            text = extract_text(response)
        except PipelineError as exc:
            result.warnings.append(f"Reference link skipped: {exc.message}")
            continue
        except _Unreadable as exc:
            result.warnings.append(f"Reference link skipped: {url} {exc}")
            continue
        except Exception:  # noqa: BLE001 - a reference link must never fail the job
            logger.exception("reading reference link %s failed", url)
            result.warnings.append(f"Reference link skipped: {url} could not be read.")
            continue
        text = trim(text, max_chars)
        result.resources.append(Resource(url=url, text=text))
        if publish is not None:
            publish("progress", f"Read {url} ({len(text):,} characters)")
    return result


def extract_text(response: FetchedResponse) -> str:
    """Readable text of a fetched page or text file, whitespace collapsed."""
    media = response.media_type
    if media not in HTML_TYPES | TEXT_TYPES | UNTYPED and not media.startswith("text/"):
        raise _Unreadable(f"is not a web page or text file ({media}).")
    if b"\x00" in response.content[:8192]:
        raise _Unreadable(f"looks like a binary file ({media or 'no content type'}).")
    raw = _decode(response.content, response.charset)
    is_html = media in HTML_TYPES or (media in UNTYPED and looks_like_html(raw))
    if is_html:
        text = html_to_text(raw)
    elif media in {"application/json", "application/ld+json"}:
        text = _compact_json(raw)
    else:
        text = raw
    text = collapse_whitespace(text)
    if not text:
        raise _Unreadable("has no readable text (the page may need JavaScript).")
    return text


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def collapse_whitespace(text: str) -> str:
    """Runs of spaces become one space; blank lines go; line breaks between blocks stay."""
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def trim(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    if space > max_chars * 0.8:
        cut = cut[:space]
    return cut + "…"


def _decode(content: bytes, charset: str | None) -> str:
    for encoding in (charset, "utf-8-sig"):
        if not encoding:
            continue
        try:
            return content.decode(encoding)
        except (LookupError, UnicodeDecodeError):
            continue
    return content.decode("utf-8", errors="replace")


def _compact_json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), ensure_ascii=False, indent=1)
    except ValueError:
        return text


class _TextExtractor(HTMLParser):
    """Visible text: script, style and other non-content elements are dropped."""

    SKIP = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object"})
    BLOCK = frozenset(
        {
            "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article",
            "header", "footer", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote",
            "title", "dt", "dd", "hr", "main", "nav", "aside", "figcaption",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self._skipping.append(tag)
        elif tag in self.BLOCK:
            self.parts.append("\n")
        elif tag in {"td", "th"}:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skipping:
            if tag == self._skipping[-1]:
                self._skipping.pop()
            return
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)
