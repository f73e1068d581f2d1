"""A real HTTP server on 127.0.0.1 for integration tests, with canned replies per path.

with loopback_server({"/data.csv": Reply(body="a,b\\n1,2\\n")}) as server:
    guard.fetch(server.url("/data.csv"), max_bytes=1000)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)
    send_length: bool = True  # False: no Content-Length, the body ends when the socket closes
    delay: float = 0.0  # seconds to wait before answering
    chunks: int = 1  # send the body in this many pieces ...
    chunk_delay: float = 0.0  # ... this many seconds apart

    @property
    def data(self) -> bytes:
        return self.body.encode("utf-8") if isinstance(self.body, str) else self.body


def redirect(location: str, status: int = 302) -> Reply:
    return Reply(status=status, headers={"Location": location})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]


RouteHandler = Reply | Callable[["LoopbackServer", RecordedRequest], Reply]


class LoopbackServer:
    def __init__(self, routes: Mapping[str, RouteHandler]) -> None:
        self.routes: dict[str, RouteHandler] = dict(routes)
        self.requests: list[RecordedRequest] = []
        self.stopping = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    def paths_requested(self) -> list[str]:
        return [r.path for r in self.requests]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()  # wakes handlers that are sleeping
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def loopback_server(routes: Mapping[str, RouteHandler] | None = None) -> Iterator[LoopbackServer]:
    server = LoopbackServer(routes or {})
    server.start()
    try:
        yield server
    finally:
        server.stop()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: LoopbackServer

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up early (timeouts, size caps) are expected here


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - the http.server naming
        owner = self.server.owner
        recorded = RecordedRequest("GET", self.path, dict(self.headers.items()))
        owner.requests.append(recorded)
        route = owner.routes.get(self.path.split("?", 1)[0])
        if route is None:
            reply = Reply(status=404, body="not found")
        elif isinstance(route, Reply):
            reply = route
        else:
            reply = route(owner, recorded)
        self._send(reply, owner.stopping)

    def _send(self, reply: Reply, stopping: threading.Event) -> None:
        if reply.delay and stopping.wait(reply.delay):
            return
        data = reply.data
        self.send_response(reply.status)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        if reply.send_length:
            self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        size = max(1, -(-len(data) // max(1, reply.chunks)))
        for start in range(0, len(data), size):
            self.wfile.write(data[start : start + size])
            self.wfile.flush()
            if reply.chunk_delay and stopping.wait(reply.chunk_delay):
                return

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass
