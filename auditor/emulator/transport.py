"""The emulator's HTTP side: TLS connections, one handler thread per connection, and how an answer is delivered.

Most answers are written whole: status line, headers and body in one write on a TCP_NODELAY socket. Written in
two (the stdlib's headers, then the body) the second write waits for the client's delayed ACK of the first
under Nagle's algorithm, about 40 ms a response, which turned 50 ms of configured latency into 96 ms and
distorted every benchmark figure. Transport faults are delivered here: a connection dropped without an answer
(a TCP reset), an answer that never comes (until the emulator stops), and one drip-fed a byte at a time.
"""

from __future__ import annotations

import contextlib
import http
import socket
import ssl
import struct
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

from .responses import Response

if TYPE_CHECKING:
    from .server import Emulator

HANDLER_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str  # decoded, as routed
    query: str  # decoded query string
    status: int

    def param(self, name: str) -> str | None:
        """A query parameter by name (case-insensitive), e.g. `record.param("$filter")`."""
        for key, value in parse_qsl(self.query, keep_blank_values=True):
            if key.lower() == name.lower():
                return value
        return None


def clean_path(raw_path: str) -> str:
    """Decode and collapse `//` (scope-encoded SDK paths decode to `//subscriptions/...`)."""
    segments = [s for s in unquote(raw_path).split("/") if s]
    return "/" + "/".join(segments)


class Server(ThreadingHTTPServer):
    """Threads per connection; TLS handshakes happen in the connection's thread, not the accept loop."""

    # Non-daemon handler threads are tracked by ThreadingMixIn and joined by server_close() (block_on_close), so
    # stop() returns only when no handler is left running; close_connections() first wakes any blocked on a socket.
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], emulator: Emulator, context: ssl.SSLContext
    ) -> None:
        self.emulator = emulator
        self.context = context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        # A response is one write; without Nagle's algorithm it leaves at once (no wait for an ACK in flight).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._open_lock:
            self._open.add(tls)
        return tls, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain shutdown: safe across threads

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up or fail the TLS handshake are not worth a traceback."""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' connection pools expect
    timeout = HANDLER_TIMEOUT_S
    server: Server

    def setup(self) -> None:
        self.request.settimeout(self.timeout)
        self.request.do_handshake()
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        """Silence the stdlib's stderr log; the emulator keeps its own."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._serve()

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve()

    def do_PUT(self) -> None:  # noqa: N802
        self._serve()

    def do_PATCH(self) -> None:  # noqa: N802
        self._serve()

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve()

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        emulator = self.server.emulator
        seq = emulator._arrive()
        body = self._read_body()
        raw_path, _, raw_query = self.path.partition("?")
        path = clean_path(raw_path)
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        response, refused = emulator.handle(self.command, path, params, self.headers.get("Authorization", ""), body)
        if self.command == "HEAD" and response.status == 200:
            response = Response(204, b"", response.headers, response.content_type)
        # Record before answering: a caller that reads the log right after its call must see this request.
        emulator._record(seq, RequestRecord(self.command, path, unquote(raw_query), response.status), refused)
        if response.delivery == "reset":
            self._reset()
        elif response.delivery == "hang":
            emulator.stopping.wait()  # never answers; ends when the emulator stops
            self.close_connection = True
        else:
            self._send(response)

    def _reset(self) -> None:
        """Drop the connection without an answer: SO_LINGER 0 makes the close a TCP reset."""
        with contextlib.suppress(OSError):
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _read_body(self, keep: int = 1 << 20) -> bytes:
        """Read any request body (so the keep-alive connection stays in step); keep up to `keep` bytes of it (a
        Resource Graph query's JSON)."""
        length = int(self.headers.get("Content-Length") or 0)
        kept = bytearray()
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)
            if len(kept) < keep:
                kept += chunk[: keep - len(kept)]
        return bytes(kept)

    def _send(self, response: Response) -> None:
        head = self._head(response)
        if self.command == "HEAD":
            self.wfile.write(head)
            return
        if response.delivery != "drip":
            self.wfile.write(head + response.body)  # one write: see the module docstring
            return
        interval = self.server.emulator.faults.drip_interval_s
        try:
            self.wfile.write(head)
            for i in range(len(response.body)):
                if self.server.emulator.stopping.wait(interval):
                    break
                self.wfile.write(response.body[i : i + 1])
        except OSError:  # the client gave up
            pass
        self.close_connection = True

    def _head(self, response: Response) -> bytes:
        """The status line and headers, as the stdlib's send_response/send_header would write them, as bytes."""
        request_id = str(uuid.uuid4())
        headers = {
            "Server": self.version_string(),
            "Date": self.date_time_string(),
            "Content-Type": response.content_type,
            "Content-Length": str(0 if self.command == "HEAD" else len(response.body)),
            "Cache-Control": "no-cache",
            "x-ms-request-id": request_id,
            "x-ms-correlation-request-id": request_id,
        }
        lines = [f"{self.protocol_version} {response.status} {http.HTTPStatus(response.status).phrase}"]
        lines += [f"{key}: {value}" for key, value in headers.items()]
        lines += [f"{key}: {value}" for key, value in response.headers.items()]
        if any(key.lower() == "connection" and value.lower() == "close" for key, value in response.headers.items()):
            self.close_connection = True
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "strict")
