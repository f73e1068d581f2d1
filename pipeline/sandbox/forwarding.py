"""The live app's one way in: a host port forwarded into a sandbox that has no network.

Under bubblewrap the app runs in its own network namespace, which holds nothing but its own
loopback: it can accept connections but dial nothing on the host or the internet. To reach
it, `PortForward` listens on the host's port and hands every connection it accepts to a
relay inside the sandbox as one end of a fresh Unix socket pair, passed over a control
socket (SCM_RIGHTS). The relay connects to 127.0.0.1:PORT inside the namespace and shuttles
the bytes. A socket pair has no path, so there is nothing in the sandbox's filesystem the
code could swap for a link to one of the host's own sockets; and the service only ever
sends on the control socket, so nothing can come back through it but bytes for the client.

This module is also the relay: `relay_command` runs this very file with `python -I -c`
inside the sandbox, so it imports nothing but the standard library.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import sys
import threading
import time
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

_CHUNK = 65536  # bytes read at a time; also the most buffered per direction of a connection
MAX_LINKS = 128  # connections relayed at once per app; more wait in the listen backlog
_BACKLOG = 128
_TICK = 1.0  # seconds between housekeeping checks of a loop
_PAUSE = 0.5  # seconds the host stops accepting after running out of descriptors
# Neither a client that never closes after the app's answer (linger) nor one that stops
# reading or sending altogether (idle) may hold one of the `MAX_LINKS` places for good.
LINGER = 5.0  # seconds after the app closed and its answer was passed on
IDLE = 120.0  # seconds without a byte moved either way


class _Link:
    """Two sockets joined both ways, with end-of-stream passed on in each direction."""

    def __init__(self, a: socket.socket, b: socket.socket, *, connecting: bool = False) -> None:
        self.ends = (a, b)  # (towards the client, towards the app)
        self.connecting = connecting  # b is still completing a non-blocking connect
        self.outbox = {a: b"", b: b""}  # bytes waiting to be written to that socket
        self.read_eof = {a: False, b: False}
        self.write_eof = {a: False, b: False}
        self.moved_at = time.monotonic()
        self.answered_at: float | None = None

    def other(self, end: socket.socket) -> socket.socket:
        return self.ends[1] if end is self.ends[0] else self.ends[0]

    @property
    def done(self) -> bool:
        return all(self.write_eof.values())

    @property
    def answered(self) -> bool:
        """The app closed its side and all it sent has been passed on to the client."""
        client, app = self.ends
        return self.read_eof[app] and self.write_eof[client]

    def interest(self, end: socket.socket) -> int:
        if self.connecting:
            return selectors.EVENT_WRITE if end is self.ends[1] else 0
        events = 0
        if not self.read_eof[end] and not self.outbox[self.other(end)]:
            events |= selectors.EVENT_READ  # read only when the last read was passed on
        if self.outbox[end]:
            events |= selectors.EVENT_WRITE
        return events

    def step(self, end: socket.socket, events: int) -> None:
        """Move what `end` is ready for. OSError means the connection is broken."""
        if self.connecting:
            failure = end.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if failure:
                raise OSError(failure, os.strerror(failure))
            self.connecting = False
            return
        if events & selectors.EVENT_WRITE and self.outbox[end]:
            sent = end.send(self.outbox[end])
            self.outbox[end] = self.outbox[end][sent:]
            self.moved_at = time.monotonic()
        if events & selectors.EVENT_READ:
            data = end.recv(_CHUNK)
            if data:
                self.outbox[self.other(end)] += data
            else:
                self.read_eof[end] = True
            self.moved_at = time.monotonic()
        for side in self.ends:  # a finished direction is closed for writing
            finished = self.read_eof[self.other(side)] and not self.outbox[side]
            if finished and not self.write_eof[side]:
                self.write_eof[side] = True
                side.shutdown(socket.SHUT_WR)
        if self.answered_at is None and self.answered:
            self.answered_at = time.monotonic()

    def expired(self, now: float, *, linger: float, idle: float) -> bool:
        if self.answered_at is not None and now - self.answered_at >= linger:
            return True
        return now - self.moved_at >= idle

    def close(self) -> None:
        for end in self.ends:
            end.close()


class _Pump:
    """Every link of one side, moved by one thread with one selector."""

    def __init__(self, *, linger: float = LINGER, idle: float = IDLE) -> None:
        self.selector = selectors.DefaultSelector()
        self.links: dict[socket.socket, _Link] = {}
        self.tick = min(_TICK, linger, idle)  # how long a loop may wait between expiries
        self._linger = linger
        self._idle = idle
        self._registered: dict[socket.socket, int] = {}

    @property
    def count(self) -> int:
        return len(self.links) // 2

    def add(self, link: _Link) -> None:
        for end in link.ends:
            end.setblocking(False)
            self.links[end] = link
        self._refresh(link)

    def handle(self, end: socket.socket, events: int) -> bool:
        """Serve one ready socket; False if it is not one of the links'."""
        link = self.links.get(end)
        if link is None:
            return False
        try:
            link.step(end, events)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:  # reset, refused, broken pipe: the connection is over
            self.drop(link)
            return True
        if link.done:
            self.drop(link)
        else:
            self._refresh(link)
        return True

    def expire(self) -> None:
        """Drop connections kept open too long after the answer, or stuck without traffic."""
        now = time.monotonic()
        for link in self._unique():
            if link.expired(now, linger=self._linger, idle=self._idle):
                self.drop(link)

    def drop(self, link: _Link) -> None:
        for end in link.ends:
            self.links.pop(end, None)
            if self._registered.pop(end, None) is not None:
                self.selector.unregister(end)
        link.close()

    def close(self) -> None:
        for link in self._unique():
            self.drop(link)
        self.selector.close()

    def _unique(self) -> list[_Link]:
        return list({id(link): link for link in self.links.values()}.values())

    def _refresh(self, link: _Link) -> None:
        for end in link.ends:
            wanted, current = link.interest(end), self._registered.get(end, 0)
            if wanted == current:
                continue
            if not wanted:
                self.selector.unregister(end)
                del self._registered[end]
            elif not current:
                self.selector.register(end, wanted)
                self._registered[end] = wanted
            else:
                self.selector.modify(end, wanted)
                self._registered[end] = wanted


class PortForward:
    """The host side: a TCP listener whose connections go to the relay in one sandbox.

    Made (and its port bound) before the app starts, so the port the pipeline was given
    cannot be taken meanwhile. `inside` is the control socket's other end, for the relay;
    `start` runs the forwarding thread, `close` stops it and closes every socket it holds.
    """

    def __init__(
        self,
        host: str = "",
        port: int = 0,
        *,
        max_links: int = MAX_LINKS,
        linger: float = LINGER,
        idle: float = IDLE,
    ) -> None:
        self._max_links = max_links
        self._linger = linger
        self._idle = idle
        self._listener = socket.create_server((host, port), backlog=_BACKLOG)
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self._control, self.inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._control.setblocking(False)
        self._wake_read, self._wake = socket.socketpair()
        self._stopping = False
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Forward from now on. The relay must have been started with `inside` by now."""
        self.inside.close()  # the relay holds its own copy
        with self._lock:
            if self._stopping:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"sandbox-forward-{self.port}", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop accepting, drop every connection, release the port. Idempotent."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            with contextlib.suppress(OSError):
                self._wake.send(b"x")
            thread = self._thread
        if thread is None:
            self._close_sockets()
        elif thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        pump = _Pump(linger=self._linger, idle=self._idle)
        pump.selector.register(self._wake_read, selectors.EVENT_READ)
        accepting, paused_until = False, 0.0
        try:
            while not self._stopping:
                pump.expire()
                want = pump.count < self._max_links and time.monotonic() >= paused_until
                if want != accepting:
                    if want:
                        pump.selector.register(self._listener, selectors.EVENT_READ)
                    else:
                        pump.selector.unregister(self._listener)
                    accepting = want
                for key, events in pump.selector.select(pump.tick):
                    if key.fileobj is self._listener:
                        if not self._accept(pump):
                            paused_until = time.monotonic() + _PAUSE
                    elif key.fileobj is not self._wake_read:
                        pump.handle(key.fileobj, events)  # type: ignore[arg-type]
        except Exception:  # a bug of ours must not leave the port half open
            log.exception("forwarding for port %s stopped", self.port)
        finally:
            pump.close()
            self._close_sockets()

    def _accept(self, pump: _Pump) -> bool:
        """Hand waiting clients to the relay; False when out of file descriptors."""
        while pump.count < self._max_links:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return True
            except (ConnectionAbortedError, ConnectionResetError):
                continue  # that client gave up before we got to it
            except OSError as error:  # EMFILE and the like: try again a little later
                log.warning("port %s: cannot accept more connections: %s", self.port, error)
                return False
            try:
                ours, theirs = socket.socketpair()
            except OSError:
                client.close()
                return False
            try:
                socket.send_fds(self._control, [b"c"], [theirs.fileno()])
            except OSError:  # the relay is gone or not keeping up: refuse this one
                client.close()
                ours.close()
                continue
            finally:
                theirs.close()
            pump.add(_Link(client, ours))
        return True

    def _close_sockets(self) -> None:
        for sock in (self._listener, self._control, self.inside, self._wake_read, self._wake):
            sock.close()


def relay_command(python: str, *, control_fd: int, port: int, command: list[str]) -> list[str]:
    """The argv that starts the relay inside the sandbox, then runs `command` as the app.

    -I: the relay imports nothing from the app's directory, which the code could fill.
    """
    return [python, "-I", "-c", _own_source(), str(control_fd), str(port), "--", *command]


@cache
def _own_source() -> str:
    return Path(__file__).read_text(encoding="utf-8")


def run_relay(control: socket.socket, port: int) -> None:
    """Inside the sandbox: connect each socket the host passes to the app on `port`.

    Returns when the host stops forwarding (the app is being stopped).
    """
    pump = _Pump()
    pump.selector.register(control, selectors.EVENT_READ)
    try:
        while True:
            pump.expire()
            for key, events in pump.selector.select(pump.tick):
                if key.fileobj is not control:
                    pump.handle(key.fileobj, events)  # type: ignore[arg-type]
                    continue
                try:
                    message, fds, _flags, _address = socket.recv_fds(control, 16, 4)
                except (BlockingIOError, InterruptedError):
                    continue
                if not message and not fds:
                    return
                for fd in fds:
                    _connect_to_app(pump, socket.socket(fileno=fd), port)
    finally:
        pump.close()


def _connect_to_app(pump: _Pump, client: socket.socket, port: int) -> None:
    try:
        app = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        client.close()
        return
    app.setblocking(False)
    error = app.connect_ex(("127.0.0.1", port))
    if error not in (0, errno.EINPROGRESS):
        client.close()  # the app is not listening (yet): the client sees the door shut
        app.close()
        return
    pump.add(_Link(client, app, connecting=error != 0))


def _start_relay(control_fd: int, port: int) -> None:
    """Fork the relay off, twice, so the app is not its parent and never reaps it."""
    control = socket.socket(fileno=control_fd)
    control.set_inheritable(False)
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        control.close()  # the app gets no copy
        return
    try:
        if os.fork() == 0:
            with contextlib.suppress(OSError):  # the relay has nothing to say on stdin/stdout
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 0)
                os.dup2(null, 1)
            run_relay(control, port)
    except BaseException as error:  # noqa: BLE001 - the relay's last word goes to the app log
        print(f"[sandbox] port relay stopped: {error!r}", file=sys.stderr, flush=True)
    finally:
        os._exit(0)


def _main(argv: list[str]) -> None:
    control_fd, port, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: forwarding CONTROL_FD PORT -- COMMAND...")
    _start_relay(int(control_fd), int(port))
    try:
        os.execvp(command[0], command)
    except OSError as error:
        print(f"cannot start {command[0]!r}: {error.strerror}", file=sys.stderr, flush=True)
        os._exit(127)


if __name__ == "__main__":
    _main(sys.argv[1:])
