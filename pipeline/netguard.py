"""The one guard against server-side request forgery.

Every URL the pipeline fetches for a user goes through `UrlGuard`: only http(s), and
every address the host name resolves to must be public. `fetch` then connects to the
address it checked (so a second DNS answer cannot point it elsewhere) and checks each
redirect hop the same way.

`parse_link` is the one place a link is read: the user's, and every redirect's `Location`.
The HTTP library only ever gets a URL that `parse_link` produced; it never reads a
`Location` itself (requests go straight to a transport, which knows nothing of redirects).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import idna

from pipeline.errors import FetchError, UnsafeURLError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]

ALLOWED_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_PRIVATE_HINT = (
    "TrainBot only fetches public http(s) URLs. Upload the file instead, "
    "or set TRAINBOT_ALLOW_PRIVATE_URLS=1 for local use."
)

# Ranges `ipaddress` flags inconsistently across Python versions, named explicitly.
_NAMED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = (
    (ipaddress.ip_network("169.254.169.254/32"), "cloud metadata address"),
    (ipaddress.ip_network("0.0.0.0/8"), "unspecified address"),
    (ipaddress.ip_network("100.64.0.0/10"), "shared (carrier-grade NAT) network address"),
    (ipaddress.ip_network("169.254.0.0/16"), "link-local address"),
    (ipaddress.ip_network("fe80::/10"), "link-local address"),
    (ipaddress.ip_network("fc00::/7"), "unique-local network address"),
    (ipaddress.ip_network("fec0::/10"), "site-local network address"),
    (ipaddress.ip_network("64:ff9b:1::/48"), "reserved address"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")


@dataclass(frozen=True)
class FetchedResponse:
    url: str  # the URL asked for
    final_url: str  # after redirects
    status: int
    content_type: str  # the Content-Type header as sent, "" when missing
    content: bytes

    @property
    def media_type(self) -> str:
        """`text/html` for `text/html; charset=utf-8`."""
        return self.content_type.split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for param in self.content_type.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip("\"'")
        return None


def _short(url: str, limit: int = 120) -> str:
    """A link as shown to people: at most `limit` characters, control characters as "?"."""
    url = url if len(url) <= limit else url[: limit - 1] + "…"
    return "".join(c if c.isprintable() else "?" for c in url)


class InvalidLink(ValueError):
    """Text that is not a well-formed link; `reason` says what is wrong, in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_link(text: str, base: httpx.URL | None = None) -> httpx.URL:
    """`text` as a URL (resolved against `base`, as a redirect's `Location` is), or
    InvalidLink. Whether the link may be fetched is `UrlGuard.check`'s decision."""
    text = text.strip()
    if "\\" in text:
        # Browsers read "\" as "/" (so "http:\\127.0.0.1" is a host); httpx reads it as
        # part of a path. Refusing it means nothing can read the link as a different host.
        raise InvalidLink("it contains a backslash (\\); links use forward slashes (/)")
    if any(not c.isprintable() for c in text):
        raise InvalidLink("it contains invisible or control characters (a tab, a line break)")
    try:
        url = httpx.URL(text) if base is None else base.join(text)
    except (httpx.InvalidURL, UnicodeError, TypeError) as exc:  # idna.IDNAError is a UnicodeError
        raise InvalidLink(_library_reason(exc)) from exc
    if url.port is not None and not 0 < url.port < 65536:
        raise InvalidLink(f"the port number {url.port} is out of range")
    host = url.raw_host.decode("ascii")
    for label in host.lower().split("."):
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError as exc:
                raise InvalidLink(
                    f"{_short(label, 60)} is not a valid internationalised (xn--) name"
                ) from exc
    return url


def _library_reason(exc: Exception) -> str:
    """httpx's reason (it names the part of the link at fault) as a clause of our message."""
    if isinstance(exc, UnicodeError) or "IDNA" in str(exc):
        return "its host name is not a valid internationalised name"
    reason = str(exc).rstrip(".") or "it cannot be read as a link"
    return _short(reason[0].lower() + reason[1:], 160)


def format_size(n: int) -> str:
    """Sizes as users read them; MB here is 1024 * 1024 bytes, like TRAINBOT_MAX_DATASET_MB."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.3g} MB"
    if n >= 1000:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_TRANSLATED:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if int(ip) >> 32 == 0:  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(ip))
    return None


def _display(ip: IPAddress) -> str:
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    return f"{ip}, which is {embedded}" if embedded is not None and int(embedded) > 1 else str(ip)


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public address (e.g. "loopback address"), or None if it is."""
    if ip.is_unspecified:
        return "unspecified address"
    if ip.is_loopback:
        return "loopback address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return blocked_reason(embedded)
    for network, reason in _NAMED_NETWORKS:
        if ip.version == network.version and ip in network:
            return reason
    if ip.is_link_local:
        return "link-local address"
    if ip.is_multicast:
        return "multicast address"
    if ip.is_reserved:
        return "reserved address"
    if ip.is_private:
        return "private network address"
    if not ip.is_global:
        return "non-public address"
    return None


def _parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    except ValueError:
        return None


def link_problem(url: str) -> str | None:
    """Why `url` can never be fetched (not a link, not http(s), no host), or None;
    no DNS lookup, so forms can call it inline. `UrlGuard.check` then decides on the
    address."""
    try:
        fetchable_link(url)
    except UnsafeURLError as error:
        return error.message
    return None


def fetchable_link(url: str) -> httpx.URL:
    """`url` parsed, if it is a link that may be fetched at all, or UnsafeURLError."""
    shown = _short(url.strip())
    try:
        parsed = parse_link(url)
    except InvalidLink as exc:
        raise UnsafeURLError(
            f"{shown} is not a valid link: {exc.reason}. Copy the link again from "
            "your browser's address bar, e.g. https://example.com/data.csv."
        ) from exc
    return _allowed(shown, parsed)


def _allowed(shown: str, parsed: httpx.URL) -> httpx.URL:
    """`parsed` if its scheme and host may be fetched at all (addresses come next)."""
    if parsed.scheme not in ALLOWED_SCHEMES:
        scheme = f"{parsed.scheme}: links" if parsed.scheme else "Links without http(s)://"
        raise UnsafeURLError(
            f"{shown} cannot be fetched: {scheme} are not allowed; "
            "TrainBot only fetches public http(s) URLs. Upload the file instead."
        )
    if not parsed.host:
        raise UnsafeURLError(
            f"{shown} has no host name; paste the full link, e.g. https://example.com/data.csv."
        )
    return parsed


class UrlGuard:
    """Decides which URLs may be fetched and fetches them safely."""

    def __init__(
        self,
        allow_private: bool = False,
        resolver: Resolver = socket.getaddrinfo,
        extra_allowed_networks: Sequence[IPNetwork] = (),
    ) -> None:
        self.allow_private = allow_private
        self._resolver = resolver
        self._extra = tuple(extra_allowed_networks)

    # -- checking -----------------------------------------------------------------

    def check(self, url: str) -> list[IPAddress]:
        """Validate `url` and return the addresses its host resolves to, all allowed."""
        return self._check_parsed(url, fetchable_link(url))

    def _check_parsed(self, url: str, parsed: httpx.URL) -> list[IPAddress]:
        host = parsed.raw_host.decode("ascii")  # IDNA-encoded, as DNS and TLS want it
        literal = _parse_ip(host)
        if literal is not None:
            addresses = [literal]
        else:
            addresses = self._resolve(url, host, parsed.port or _default_port(parsed))
        if not self.allow_private:
            for ip in addresses:
                self._check_address(url, ip, literal is not None)
        return addresses

    def _resolve(self, url: str, host: str, port: int) -> list[IPAddress]:
        try:
            infos = self._resolver(host, port, 0, socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise FetchError(
                f"Could not find the server {_short(host)} (for {_short(url)}); "
                "check that the link is spelled correctly and publicly reachable.",
                detail=repr(exc),
            ) from exc
        addresses: list[IPAddress] = []
        for info in infos:
            ip = _parse_ip(str(info[4][0]))
            if ip is not None and ip not in addresses:
                addresses.append(ip)
        if not addresses:
            raise FetchError(f"Could not find the server {_short(host)} (for {_short(url)}).")
        return addresses

    def _check_address(self, url: str, ip: IPAddress, literal: bool) -> None:
        if any(ip.version == net.version and ip in net for net in self._extra):
            return
        reason = blocked_reason(ip)
        if reason is not None:
            verb = "points at" if literal else "resolves to"
            raise UnsafeURLError(
                f"{_short(url)} {verb} a {reason} ({_display(ip)}); {_PRIVATE_HINT}"
            )

    # -- fetching -----------------------------------------------------------------

    def fetch(
        self,
        url: str,
        *,
        max_bytes: int,
        timeout: float = 10.0,
        total_timeout: float | None = None,
        accept: str = "*/*",
    ) -> FetchedResponse:
        """GET `url`, following up to 5 redirects, each hop checked and pinned.

        `timeout` bounds connecting and each wait for data; `total_timeout` (default
        three times `timeout`) bounds the whole download.
        """
        total = total_timeout if total_timeout is not None else timeout * 3
        deadline = time.monotonic() + total
        headers = {
            "Accept": accept,
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": "TrainBot/0.1",
        }
        current = fetchable_link(url)
        addresses = self._check_parsed(url, current)
        final_url = url.strip()
        # A bare transport, not a Client: a Client parses every Location it receives (even
        # with follow_redirects=False) and fails on malformed ones before we can look.
        with httpx.HTTPTransport(trust_env=False) as transport:
            for _hop in range(MAX_REDIRECTS + 1):
                result = self._get_pinned(
                    transport, current, addresses, headers, max_bytes, timeout, total, deadline
                )
                if not isinstance(result, str):
                    status, content_type, content = result
                    return FetchedResponse(url, final_url, status, content_type, content)
                current, addresses = self._next_hop(url, current, result)
                final_url = str(current)
                if time.monotonic() > deadline:
                    raise _too_slow_error(_short(url), total)
        raise FetchError(
            f"{_short(url)} redirected more than {MAX_REDIRECTS} times; "
            "link to the file itself instead."
        )

    def _next_hop(
        self, url: str, current: httpx.URL, location: str
    ) -> tuple[httpx.URL, list[IPAddress]]:
        """Where a redirect leads, checked like the link the user gave."""
        shown = _short(url)
        try:
            target = parse_link(location, base=current)
        except InvalidLink as exc:
            raise FetchError(
                f"{shown} redirected to an invalid address ({_short(location.strip(), 80)}): "
                f"{exc.reason}; link to the file itself instead.",
                detail=f"Location: {location[:500]!r}",
            ) from exc
        try:
            target = _allowed(_short(str(target)), target)
            return target, self._check_parsed(str(target), target)
        except UnsafeURLError as exc:
            raise UnsafeURLError(f"{shown} redirected to another link. {exc.message}") from exc

    def _get_pinned(
        self,
        transport: httpx.HTTPTransport,
        parsed: httpx.URL,
        addresses: list[IPAddress],
        headers: dict[str, str],
        max_bytes: int,
        timeout: float,
        total: float,
        deadline: float,
    ) -> str | tuple[int, str, bytes]:
        """One request to the checked address; a redirect target or (status, type, body)."""
        shown = _short(str(parsed))
        host_header = parsed.netloc.decode("ascii")
        extensions: dict[str, Any] = {"timeout": httpx.Timeout(timeout).as_dict()}
        if parsed.scheme == "https":
            extensions["sni_hostname"] = parsed.raw_host.decode("ascii")
        last_error: Exception | None = None
        for ip in addresses:  # try the next checked address only if connecting fails
            request = httpx.Request(
                "GET",
                parsed.copy_with(host=str(ip)),
                headers={**headers, "Host": host_header},
                extensions=extensions,
            )
            try:
                response = transport.handle_request(request)
                try:
                    return _read_response(response, shown, max_bytes, total, deadline)
                finally:
                    response.close()
            except httpx.ConnectTimeout as exc:
                last_error = exc
            except httpx.ConnectError as exc:
                last_error = exc
            except httpx.TimeoutException as exc:
                raise _timeout_error(shown, parsed.host, timeout) from exc
            except httpx.HTTPError as exc:
                raise FetchError(
                    f"The server {_short(parsed.host)} sent a broken response for {shown}; "
                    "try again later, or upload the file instead.",
                    detail=repr(exc),
                ) from exc
        if isinstance(last_error, httpx.ConnectTimeout):
            raise _timeout_error(shown, parsed.host, timeout) from last_error
        raise FetchError(
            f"Could not connect to {_short(parsed.host)} for {shown}; "
            "check that the link is correct and the site is up.",
            detail=repr(last_error),
        ) from last_error


def _default_port(parsed: httpx.URL) -> int:
    return 443 if parsed.scheme == "https" else 80


def _timeout_error(shown: str, host: str, timeout: float) -> FetchError:
    return FetchError(
        f"{_short(host)} did not answer within {timeout:g} s ({shown}); "
        "try again later, or upload the file instead."
    )


def _too_slow_error(shown: str, total: float) -> FetchError:
    return FetchError(
        f"{shown} took longer than {total:g} s to download; "
        "try again later, or upload the file instead."
    )


def _read_response(
    response: httpx.Response, shown: str, max_bytes: int, total: float, deadline: float
) -> str | tuple[int, str, bytes]:
    location = response.headers.get("location")
    if response.status_code in REDIRECT_STATUSES and location:
        return location
    if response.status_code >= 400:
        reason = f" {response.reason_phrase}" if response.reason_phrase else ""
        raise FetchError(
            f"{shown} answered HTTP {response.status_code}{reason}; "
            "check that the link is correct and public (no login needed)."
        )
    too_large = (
        f"{shown} is larger than the {format_size(max_bytes)} limit; "
        "use a smaller file or a sample of it."
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchError(too_large, detail=f"Content-Length: {declared}")
    body = bytearray()
    for chunk in response.iter_bytes():
        body.extend(chunk)
        if len(body) > max_bytes:
            raise FetchError(too_large)
        if time.monotonic() > deadline:
            raise _too_slow_error(shown, total)
    return response.status_code, response.headers.get("content-type", ""), bytes(body)
