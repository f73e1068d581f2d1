"""What a nosy app could dial on this machine, and code that dials all of it from inside.

The targets are the host's real listeners (from /proc/net, the kernel's own list), plus
listeners the test opens itself on loopback, on the machine's non-loopback address and as
an abstract Unix socket (those live in the network namespace, not the filesystem), plus two
addresses on the internet.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

INTERNET = [("internet 1.1.1.1:443", "1.1.1.1", 443), ("internet 8.8.8.8:53", "8.8.8.8", 53)]
_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp (include/net/tcp_states.h)
_ACCEPTING = 0x00010000  # __SO_ACCEPTCON in /proc/net/unix's Flags (include/linux/net.h)


def non_loopback_address() -> str | None:
    """The address this machine would use to reach the outside, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # a UDP connect sends nothing
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


def listening_tcp_ports() -> list[tuple[str, int]]:
    """Every TCP port the host listens on, as (address to dial, port)."""
    found: set[tuple[str, int]] = set()
    for name, loopback in (("tcp", "127.0.0.1"), ("tcp6", "::1")):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == _LISTEN:
                    found.add((loopback, int(fields[1].rsplit(":", 1)[1], 16)))
    return sorted(found)


def listening_unix_paths() -> list[str]:
    """Unix sockets the host listens on: paths, and abstract names as "@name"."""
    found: set[str] = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and int(fields[3], 16) & _ACCEPTING:
            found.add(fields[7])
    return sorted(found)


@dataclass
class Bait:
    """Listeners a test opens so that it can see whether anything connected to them."""

    tcp: list[tuple[str, str, int]] = field(default_factory=list)  # (label, host, port)
    abstract: str = ""  # "@name"
    accepted: list[str] = field(default_factory=list)

    def targets(self, *, skip_port: int | None = None) -> dict[str, object]:
        """Everything to dial, for the nosy code (JSON-able)."""
        tcp = [
            [f"host {host}:{port}", host, port]
            for host, port in listening_tcp_ports()
            if port != skip_port
        ]
        unix = [[f"unix {path}", path] for path in listening_unix_paths()]
        return {
            "tcp": [[label, host, port] for label, host, port in self.tcp] + tcp + INTERNET,
            "unix": [[f"test's {self.abstract}", self.abstract], *unix],
        }


@contextlib.contextmanager
def bait() -> Iterator[Bait]:
    found = Bait(abstract=f"@trainbot-test-{secrets.token_hex(4)}")
    sockets = [socket.create_server(("127.0.0.1", 0))]
    found.tcp.append(("test's listener on loopback", "127.0.0.1", sockets[0].getsockname()[1]))
    address = non_loopback_address()
    if address is not None:
        sockets.append(socket.create_server((address, 0)))
        port = sockets[-1].getsockname()[1]
        found.tcp.append((f"test's listener on {address}", address, port))
    abstract = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract.bind("\0" + found.abstract[1:])
    abstract.listen()
    sockets.append(abstract)
    for sock in sockets:
        sock.settimeout(0.2)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for sock in sockets:
                try:
                    connection, _ = sock.accept()
                except (TimeoutError, OSError):
                    continue
                found.accepted.append(str(sock.getsockname()))
                connection.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield found
    finally:
        stop.set()
        watcher.join()
        for sock in sockets:
            sock.close()


# Dials every target in TARGETS (tcp: [label, host, port], unix: [label, path or @name]) and
# answers what it reached. Pasted into the sandboxed code with TARGETS defined before it.
DIAL_ALL = """
import socket as _socket

def dial_all():
    reached = {}
    for label, host, port in TARGETS["tcp"]:
        family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        try:
            with _socket.socket(family, _socket.SOCK_STREAM) as sock:
                sock.settimeout(3)
                sock.connect((host, port))
            reached[label] = "connected"
        except OSError as error:
            reached[label] = "refused: " + type(error).__name__
    for label, path in TARGETS["unix"]:
        address = "\\0" + path[1:] if path.startswith("@") else path
        try:
            with _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM) as sock:
                sock.settimeout(3)
                sock.connect(address)
            reached[label] = "connected"
        except OSError as error:
            reached[label] = "refused: " + type(error).__name__
    try:
        _socket.getaddrinfo("pypi.org", 443)
        reached["dns pypi.org"] = "connected"
    except OSError as error:
        reached["dns pypi.org"] = "refused: " + type(error).__name__
    return {"reached": reached, "interfaces": sorted(n for _, n in _socket.if_nameindex())}
"""
