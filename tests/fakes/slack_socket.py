"""A fake Slack Socket Mode endpoint: a real websocket server on 127.0.0.1.

    with FakeSocketMode() as socket, FakeSlack(socket_mode=socket.new_url) as fake:
        handler = SocketModeHandler(app, app_token=fake.app_token)
        handler.connect()  # apps.connections.open on FakeSlack hands out socket.new_url()
        socket.wait_connected()
        payload = slash_command("help", trigger_id="t1")  # tests.support.slack_payloads
        ack = socket.send("slash_commands", payload, accepts_response_payload=True)
        assert ack.payload["text"]  # the ephemeral answer, as the HTTP response body would be

As Slack does, it accepts only the URLs it issued (a ticket in the query), greets every
connection with a `hello` message, then delivers envelopes
`{"envelope_id", "type", "payload", "accepts_response_payload"}` to the newest connection.
The client's acks, `{"envelope_id", "payload"?}`, are recorded in `acks`; anything else the
client sends lands in `unexpected`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit
from uuid import uuid4

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

ENVELOPE_TYPES = frozenset({"slash_commands", "interactive", "events_api"})


@dataclass(frozen=True)
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None  # None: an empty ack
    seconds: float  # from the envelope's push to its ack


class FakeSocketMode:
    def __init__(self, *, app_id: str = "A0001") -> None:
        self.app_id = app_id
        self.acks: list[Ack] = []
        self.unexpected: list[str] = []  # client messages that ack no envelope

        self._changed = threading.Condition()
        self._send_lock = threading.Lock()
        self._tickets: set[str] = set()
        self._connections: list[ServerConnection] = []
        self._connected = 0  # connections ever greeted
        self._pushed_at: dict[str, float] = {}
        self._seq = itertools.count(1)
        self._server: Server = serve(
            self._session,
            "127.0.0.1",
            0,
            process_request=self._check_ticket,
            compression=None,  # Slack's client offers no extensions
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.socket.getsockname()[1])

    def new_url(self) -> str:
        """A connection URL as apps.connections.open returns it."""
        ticket = uuid4().hex
        with self._changed:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"

    def start(self) -> FakeSocketMode:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()  # closes open connections and waits for their threads
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeSocketMode:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what tests do -----------------------------------------------------------------------

    def wait_connected(self, timeout: float = 5.0, count: int = 1) -> None:
        """Wait until `count` connections have been greeted with `hello`."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._connected >= count, timeout):
                raise AssertionError(f"waited {timeout}s for {count} Socket Mode connection(s)")

    def push(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool,
        **extra: Any,
    ) -> str:
        """Deliver an envelope (extra: e.g. retry_attempt, retry_reason); returns its id."""
        assert type in ENVELOPE_TYPES, type
        with self._changed:
            if not self._connections:
                raise AssertionError("no Socket Mode connection is open")
            connection = self._connections[-1]
            envelope_id = f"{uuid4()}-{next(self._seq)}"
            self._pushed_at[envelope_id] = time.monotonic()
        envelope = {
            "envelope_id": envelope_id,
            "type": type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            **extra,
        }
        with self._send_lock:
            connection.send(json.dumps(envelope))
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> Ack:
        with self._changed:
            acked = self._changed.wait_for(lambda: self._ack_of(envelope_id), timeout)
        if not acked:
            raise AssertionError(f"no ack for envelope {envelope_id} within {timeout}s")
        return acked

    def send(
        self,
        type: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool,
        timeout: float = 5.0,
        **extra: Any,
    ) -> Ack:
        """Push an envelope and wait for its ack."""
        envelope_id = self.push(
            type, payload, accepts_response_payload=accepts_response_payload, **extra
        )
        return self.wait_ack(envelope_id, timeout)

    # -- the server side ---------------------------------------------------------------------

    def _check_ticket(self, connection: ServerConnection, request: Request) -> Response | None:
        ticket = parse_qs(urlsplit(request.path).query).get("ticket", [""])[0]
        with self._changed:
            known = ticket in self._tickets
        return None if known else connection.respond(HTTPStatus.UNAUTHORIZED, "invalid ticket\n")

    def _session(self, connection: ServerConnection) -> None:
        with self._changed:
            hello = {
                "type": "hello",
                "num_connections": len(self._connections) + 1,
                "debug_info": {"host": "applink-fake", "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }
            with self._send_lock:
                connection.send(json.dumps(hello))
            self._connections.append(connection)
            self._connected += 1
            self._changed.notify_all()
        try:
            for message in connection:
                self._receive(str(message))
        except ConnectionClosed:
            pass  # the client went away; Slack would wait for it to reconnect
        finally:
            with self._changed:
                self._connections.remove(connection)
                self._changed.notify_all()

    def _receive(self, message: str) -> None:
        try:
            data = json.loads(message)
        except ValueError:
            data = None
        with self._changed:
            envelope_id = data.get("envelope_id") if isinstance(data, dict) else None
            pushed_at = self._pushed_at.get(str(envelope_id))
            if pushed_at is None:
                self.unexpected.append(message)
            else:
                assert isinstance(data, dict)
                seconds = time.monotonic() - pushed_at
                self.acks.append(Ack(str(envelope_id), data.get("payload"), seconds))
            self._changed.notify_all()

    def _ack_of(self, envelope_id: str) -> Ack | None:
        return next((ack for ack in self.acks if ack.envelope_id == envelope_id), None)
