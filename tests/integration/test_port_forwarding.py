"""The host's forwarded port and the relay, on loopback, without bubblewrap in between.

The relay runs on a thread of the test with its own copy of the control socket, as the
relay process in a sandbox holds one; the "app" is a plain TCP server on another port.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from pipeline.sandbox.forwarding import PortForward, run_relay


class _App(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def app(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handle(self.request)

    server = _App(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def forwarded(app_port: int, **options: float) -> Iterator[tuple[PortForward, threading.Thread]]:
    forward = PortForward("127.0.0.1", **options)  # type: ignore[arg-type]
    inside = forward.inside.dup()  # the relay's own copy, as a sandboxed process holds it
    relay = threading.Thread(target=run_relay, args=(inside, app_port), daemon=True)
    relay.start()
    forward.start()
    try:
        yield forward, relay
    finally:
        forward.close()
        relay.join(timeout=5)
        inside.close()


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def shut(sock: socket.socket) -> bool:
    """The other side closed: an end of stream or a reset, not a wait."""
    try:
        return read_all(sock) == b""
    except ConnectionResetError:
        return True


def reverse_after_eof(sock: socket.socket) -> None:
    """Reads until the client is done sending, then answers and closes."""
    sock.sendall(read_all(sock)[::-1])


def answer_each_line(sock: socket.socket) -> None:
    """Answers one line, then closes its side."""
    with sock.makefile("rb") as lines:
        if lines.readline():
            sock.sendall(b"ok\n")


def test_bytes_and_end_of_stream_pass_both_ways() -> None:
    payload = bytes(range(256)) * 12_000  # 3 MB: more than any buffer on the way
    with app(reverse_after_eof) as port, forwarded(port) as (forward, _):
        client = socket.create_connection(("127.0.0.1", forward.port), timeout=10)
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)  # the app answers only once it sees the end
        answer = read_all(client)
        client.close()

    assert answer == payload[::-1]


def test_a_client_that_never_closes_gives_its_place_up_after_the_answer() -> None:
    with app(answer_each_line) as port, forwarded(port, max_links=2, linger=0.3) as (forward, _):
        holders = []
        for _ in range(2):  # take every place and keep it
            holder = socket.create_connection(("127.0.0.1", forward.port), timeout=5)
            holder.sendall(b"hello\n")
            assert read_all(holder) == b"ok\n"  # the app closed after answering
            holders.append(holder)
        late = socket.create_connection(("127.0.0.1", forward.port), timeout=5)
        late.sendall(b"hello\n")
        started = time.monotonic()
        answer = read_all(late)
        waited = time.monotonic() - started
        for sock in [late, *holders]:
            sock.close()

    assert answer == b"ok\n"
    assert waited < 3


def test_a_connection_that_moves_nothing_is_dropped() -> None:
    def hold(sock: socket.socket) -> None:
        read_all(sock)  # waits for the client, which sends nothing

    with app(hold) as port, forwarded(port, idle=0.5) as (forward, _):
        quiet = socket.create_connection(("127.0.0.1", forward.port), timeout=5)
        started = time.monotonic()
        assert read_all(quiet) == b""
        quiet.close()

    assert time.monotonic() - started < 4


def test_an_app_not_listening_shuts_the_door() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        nobody = unused.getsockname()[1]
    with forwarded(nobody) as (forward, _):
        client = socket.create_connection(("127.0.0.1", forward.port), timeout=5)
        assert shut(client)
        client.close()


def test_close_releases_the_port_and_stops_both_sides() -> None:
    with app(answer_each_line) as port, forwarded(port) as (forward, relay):
        client = socket.create_connection(("127.0.0.1", forward.port), timeout=5)
        client.sendall(b"hi\n")
        assert read_all(client) == b"ok\n"
        client.close()
        open_client = socket.create_connection(("127.0.0.1", forward.port), timeout=5)
        forward.close()  # with a connection still open
        relay.join(timeout=5)

        assert not relay.is_alive()  # the relay saw the control socket close
        assert not any(t.name == f"sandbox-forward-{forward.port}" for t in threading.enumerate())
        assert shut(open_client)
        open_client.close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", forward.port), timeout=2)
