"""Endpoints that are not ARM, for the faults that point a client elsewhere.

- `Decoy`: another HTTPS host (a different port on 127.0.0.1, trusted by the same CA as the emulator, so a client
  that follows a nextLink or redirect there would really talk to it). It records every request and whether it
  carried an Authorization header, and answers every GET with a page that would change the audit if merged: a
  CanNotDelete lock on each subscription.
- `BlackHole`: accepts TCP connections and never says a word, not even the TLS handshake.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class DecoyHit:
    method: str
    path: str
    authorization: bool  # whether the request carried an Authorization header (a token that left ARM)


def decoy_lock(subscription: str) -> dict[str, Any]:
    scope = f"/subscriptions/{subscription}"
    return {
        "id": f"{scope}/providers/Microsoft.Authorization/locks/decoy-lock",
        "name": "decoy-lock",
        "type": "Microsoft.Authorization/locks",
        "properties": {"level": "CanNotDelete", "notes": "served by a host that is not ARM"},
    }


class Decoy:
    def __init__(
        self, context: ssl.SSLContext, subscriptions: list[str], on_hit: Callable[[DecoyHit], None] | None = None
    ) -> None:
        self.hits: list[DecoyHit] = []
        self._lock = threading.Lock()
        self.on_hit = on_hit
        self._body = json.dumps({"value": [decoy_lock(s) for s in subscriptions]}).encode()
        decoy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                decoy._record(DecoyHit(self.command, self.path, bool(self.headers.get("Authorization"))))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(decoy._body)))
                self.end_headers()
                self.wfile.write(decoy._body)

            do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_GET  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.endpoint = f"https://{LOOPBACK}:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="aib-decoy", daemon=True
        )
        self._thread.start()

    def _record(self, hit: DecoyHit) -> None:
        with self._lock:
            self.hits.append(hit)
        if self.on_hit is not None:
            self.on_hit(hit)

    @property
    def requests(self) -> list[DecoyHit]:
        with self._lock:
            return list(self.hits)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class BlackHole:
    """A loopback port that completes TCP connections and then never sends or reads a byte."""

    def __init__(self) -> None:
        self._server = socket.create_server((LOOPBACK, 0))
        self._server.settimeout(0.05)
        self.port = int(self._server.getsockname()[1])
        self.endpoint = f"https://{LOOPBACK}:{self.port}"
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="aib-black-hole", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)  # held open, never read: the client's TLS hello goes unanswered
            self.accepted += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()
        self._server.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
