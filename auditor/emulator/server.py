"""The HTTPS server: TLS with a throwaway CA, ARM's request checks, fault injection and the request log.

Every request goes through the same steps, in ARM's order: writes are refused (405, recorded); then the
bearer token (401), the subscription's read bucket (429), `api-version` (400), injected 5xx, forbidden scopes
(403), routing (404 and friends), and finally broken bodies. Latency is added before any of it. Transport faults
come first (a dropped connection, a request never answered), then the long or random 429s and redirects; paging
faults rewrite a list page's nextLink; a drip-fed answer is the routed answer, sent slowly.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import trustme

from auditor.ids import norm
from auditor.snapshot import Snapshot

from .decoys import BlackHole, Decoy, DecoyHit
from .faults import HTML, TRUNCATED, FaultInjector, Faults
from .graph_routes import GET_BY_IDS, GraphDirectory, is_graph_path
from .graph_routes import forbidden as graph_forbidden
from .graph_routes import unauthenticated as graph_unauthenticated
from .resourcegraph import evaluate as evaluate_query
from .responses import ArmError, Response
from .routes import GENERIC_READ, Request, Route, Router
from .store import EstateStore
from .tenant import Tenant
from .transport import Handler, RequestRecord, Server

READ_METHODS = ("GET", "HEAD")
WRITE_METHODS = ("PUT", "PATCH", "DELETE", "POST")
# POSTs that only read: Resource Graph queries (answered over the estate, see resourcegraph.py). `listKeys` and
# friends return secrets and are refused like writes.
# Microsoft Graph's getByIds reads directory objects by ID (graph_routes.py serves it).
READ_ONLY_POSTS = ("/providers/microsoft.resourcegraph/resources", GET_BY_IDS)
RESOURCE_GRAPH_READ = "Microsoft.ResourceGraph/resources/read"
LOOPBACK = "127.0.0.1"
POLL_INTERVAL_S = 0.05  # how soon stop() is noticed by the accept loop
_ANONYMOUS_OID = str(uuid.uuid5(uuid.NAMESPACE_URL, "aib-audit-emulator:client"))
_BROKEN_TEXT = b"<html><head><title>502 Bad Gateway</title></head><body>upstream connect error</body></html>"
_PROXY_LOGIN = (
    b"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Sign in &ndash; Contoso Web Proxy</title></head>"
    b"<body><form method='post' action='/login'><input name='user'><input type='password' name='pass'></form></body></html>"
)


def _object_id(authorization: str) -> str:
    """The caller's object ID from a JWT bearer token, for 403 messages; a fixed one for opaque tokens."""
    token = authorization.split(" ", 1)[-1].strip()
    parts = token.split(".")
    if len(parts) == 3:
        try:
            payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
            oid = payload.get("oid") if isinstance(payload, dict) else None
            if isinstance(oid, str) and oid:
                return oid
        except (ValueError, UnicodeDecodeError):
            pass
    return _ANONYMOUS_OID


class Emulator:
    """An ARM-compatible HTTPS endpoint on 127.0.0.1 serving one estate (a snapshot). Read-only."""

    def __init__(
        self,
        estate: dict[str, Any] | Snapshot,
        page_size: int = 100,
        faults: Faults | None = None,
        whole_lists: frozenset[str] = frozenset(),
    ) -> None:
        snapshot = estate if isinstance(estate, Snapshot) else Snapshot.from_dict(estate, source="estate")
        tenant = Tenant.from_estate(estate.get("tenant") if isinstance(estate, dict) else None)
        self.faults = faults or Faults()
        self._router = Router(EstateStore(snapshot, tenant), page_size, whole_lists)
        self._graph = GraphDirectory(snapshot, page_size)
        self._injector = FaultInjector(self.faults)
        self._lock = threading.Lock()
        self._seq = 0
        self._records: list[tuple[int, RequestRecord]] = []
        self._write_records: list[tuple[int, RequestRecord]] = []
        self._throttled = 0
        self._httpd: Server | None = None
        self._thread: threading.Thread | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._endpoint = ""
        self._ca_bundle = ""
        self._subscriptions = list(snapshot.subscriptions)
        self._decoy: Decoy | None = None
        # Set when stopping: hung and drip-fed answers end so their handler threads can be joined.
        self.stopping = threading.Event()

    # --- lifecycle ------------------------------------------------------------------------------------------

    def start(self, port: int = 0) -> Emulator:
        """Bind 127.0.0.1 (`port` 0 picks a free one) and serve in a background thread."""
        if self._httpd is not None:
            return self
        ca = trustme.CA()
        cert = ca.issue_cert(LOOPBACK, "localhost")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        self._tmp = tempfile.TemporaryDirectory(prefix="aib-emulator-")
        bundle = Path(self._tmp.name) / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        self._httpd = Server((LOOPBACK, port), Handler, self, context)
        port = self._httpd.server_address[1]
        self._endpoint = f"https://{LOOPBACK}:{port}"
        self._ca_bundle = str(bundle)
        self.stopping.clear()
        if self.faults.needs_decoy:
            self._decoy = Decoy(context, self._subscriptions)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": POLL_INTERVAL_S}, name="aib-emulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        if self._decoy is not None:
            self._decoy.stop()
        httpd.shutdown()  # ends serve_forever: no new connections
        httpd.close_connections()  # wakes handler threads blocked on idle keep-alive sockets
        httpd.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what callers read ----------------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if not self._endpoint:
            raise RuntimeError("the emulator is not started")
        return self._endpoint

    @property
    def ca_bundle(self) -> str:
        if not self._ca_bundle:
            raise RuntimeError("the emulator is not started")
        return self._ca_bundle

    @property
    def decoy(self) -> Decoy:
        """The other host that foreign nextLinks and redirects point at (started with such faults only)."""
        if self._decoy is None:
            raise RuntimeError("the emulator has no decoy: set foreign_link_paths or redirect_paths")
        return self._decoy

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return [r for _, r in sorted(self._records, key=lambda item: item[0])]

    @property
    def writes(self) -> list[RequestRecord]:
        with self._lock:
            return [r for _, r in sorted(self._write_records, key=lambda item: item[0])]

    @property
    def calls(self) -> int:
        with self._lock:
            return self._seq

    @property
    def throttled(self) -> int:
        with self._lock:
            return self._throttled

    def reset_counters(self) -> None:
        """Forget the request log and counters (the throttle buckets keep their state, as ARM's would)."""
        with self._lock:
            self._seq = 0
            self._records.clear()
            self._write_records.clear()
            self._throttled = 0

    # --- the request pipeline -------------------------------------------------------------------------------

    def _arrive(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _record(self, seq: int, record: RequestRecord, write: bool) -> None:
        with self._lock:
            self._records.append((seq, record))
            if write:
                self._write_records.append((seq, record))
            if record.status == 429:
                self._throttled += 1

    def handle(
        self, method: str, path: str, params: dict[str, str], authorization: str, body: bytes = b""
    ) -> tuple[Response, bool]:
        """Answer one request. Returns the response and whether it was a refused write."""
        self._injector.delay()
        if method in WRITE_METHODS and not (method == "POST" and norm(path) in READ_ONLY_POSTS):
            return _refused(method, path), True
        injector = self._injector
        if injector.reset():
            return Response(0, delivery="reset"), False
        if injector.on_path("hang_paths", path):
            return Response(0, delivery="hang"), False
        try:
            if is_graph_path(path):
                response = self._graph_read(method, path, params, authorization, body)
            else:
                response = self._read(method, path, params, authorization, body)
        except ArmError as err:
            response = err.to_response()
        if injector.on_path("drip_paths", path):
            response.delivery = "drip"
        return response, False

    def _graph_read(self, method: str, path: str, params: dict[str, str], authorization: str, body: bytes) -> Response:
        """Microsoft Graph on the same host: bearer token, injected 5xx and 403s, then the directory."""
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise graph_unauthenticated()
        status = self._injector.server_error()
        if status is not None:
            raise _server_error(status, {})
        if self._injector.forbidden_scope(path) is not None:
            raise graph_forbidden()
        return self._maybe_break(path, self._graph.handle(method, path, params, body, self.endpoint))

    def _read(self, method: str, path: str, params: dict[str, str], authorization: str, body: bytes = b"") -> Response:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthenticated(authorization)
        if method == "POST":  # an allow-listed read-only POST: a Resource Graph query
            return self._query(path, params, authorization, body)
        throttle = self._injector.throttle(path)
        rate_headers: dict[str, str] = {}
        if throttle is not None:
            remaining = str(throttle.remaining)
            rate_headers = {
                "x-ms-ratelimit-remaining-subscription-reads": remaining,
                "x-ms-ratelimit-remaining-subscription-global-reads": remaining,
            }
            if not throttle.allowed:
                raise _throttled(path, throttle.retry_after_s, rate_headers)
        if self._injector.on_path("retry_after_paths", path):
            raise _throttled(path, self.faults.retry_after_s, rate_headers)
        if self._injector.transient_throttle():
            raise _throttled(path, 1, rate_headers)
        request = Request(path, params, self.endpoint)
        if self._injector.on_path("redirect_paths", path):
            return Response(307, b"", {"Location": self._router.page_link(request, self.decoy.endpoint)})
        if not request.param("api-version"):
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
                rate_headers,
            )
        status = self._injector.server_error()
        if status is not None:
            raise _server_error(status, rate_headers)
        route, route_error = self._route(path)
        forbidden = self._injector.forbidden_scope(path)
        if forbidden is not None:
            raise _forbidden(authorization, route.action if route else GENERIC_READ, path, rate_headers)
        if route_error is not None:
            route_error.headers.update(rate_headers)
            raise route_error
        assert route is not None
        try:
            response = route.run(request)
        except ArmError as err:
            err.headers.update(rate_headers)
            raise
        response.headers.update(rate_headers)
        return self._maybe_break(path, self._rewrite_next_link(request, response))

    def _rewrite_next_link(self, request: Request, response: Response) -> Response:
        """Paging faults: a list page whose nextLink leads back to itself, or to another host (the decoy)."""
        loop = self._injector.on_path("loop_paths", request.path)
        foreign = self._injector.on_path("foreign_link_paths", request.path)
        confusing = self._injector.on_path("confusing_link_paths", request.path)
        if response.status != 200 or not (loop or foreign or confusing):
            return response
        body = json.loads(response.body)
        if not isinstance(body, dict) or "value" not in body:
            return response  # not a list page
        body["nextLink"] = self._router.page_link(request, self.decoy.endpoint if foreign else self.endpoint)
        if confusing:  # the decoy before a backslash, the emulator after it
            body["nextLink"] = self.decoy.endpoint + "\\@" + body["nextLink"].removeprefix("https://")
        return Response(200, json.dumps(body, separators=(",", ":")).encode(), response.headers, response.content_type)

    def _query(self, path: str, params: dict[str, str], authorization: str, body: bytes) -> Response:
        """Resource Graph: its own per-user quota (about 15 queries per 5 s), then the query over the estate."""
        quota = self._injector.graph_quota()
        headers: dict[str, str] = {}
        if quota is not None:
            headers = {"x-ms-user-quota-remaining": str(quota.remaining), "x-ms-user-quota-resets-after": "00:00:05"}
            if not quota.allowed:
                raise ArmError(
                    429,
                    "RateLimiting",
                    "Please provide below info when asking for support: ... Client application has been throttled and "
                    "should not attempt to repeat the request until an amount of time has elapsed.",
                    {**headers, "Retry-After": str(quota.retry_after_s)},
                )
        if not Request(path, params).param("api-version"):
            raise ArmError(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required.")
        if self._injector.forbidden_scope(path) is not None:
            raise _forbidden(authorization, RESOURCE_GRAPH_READ, path, headers)
        status = self._injector.server_error()
        if status is not None:
            raise _server_error(status, headers)
        response = evaluate_query(body, self._router.store.typed_resources)
        response.headers.update(headers)
        if self.faults.graph_truncated and response.status == 200:
            page = json.loads(response.body)
            page.pop("$skipToken", None)
            page["resultTruncated"] = "true"
            return Response(200, json.dumps(page).encode(), response.headers, response.content_type)
        return response

    def _route(self, path: str) -> tuple[Route | None, ArmError | None]:
        try:
            return self._router.resolve(path), None
        except ArmError as err:
            return None, err

    def _maybe_break(self, path: str, response: Response) -> Response:
        mode = self._injector.broken_mode(path)
        if mode is None:
            return response
        if mode == TRUNCATED:
            body = response.body if response.status == 200 and len(response.body) > 2 else b'{"value": [{"id": "/sub'
            return Response(200, body[: max(1, len(body) // 2)], response.headers)
        if mode == HTML:
            return Response(200, _PROXY_LOGIN, response.headers, content_type="text/html; charset=utf-8")
        return Response(200, _BROKEN_TEXT, response.headers)


def _refused(method: str, path: str) -> Response:
    return ArmError(
        405,
        "ReadOnlyEmulator",
        f"The aib-audit emulator is read-only: {method} {path} was refused and recorded.",
        {"Allow": ", ".join(READ_METHODS)},
    ).to_response()


def _unauthenticated(authorization: str) -> ArmError:
    why = "The 'Authorization' header is missing." if not authorization.strip() else "The access token is invalid."
    return ArmError(
        401,
        "AuthenticationFailed",
        f"Authentication failed. {why}",
        {"WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"'},
    )


def _throttled(path: str, retry_after_s: int, rate_headers: dict[str, str]) -> ArmError:
    sub = path.split("/")[2] if path.lower().startswith("/subscriptions/") else None
    code, who = ("SubscriptionRequestsThrottled", f"subscription '{sub}'") if sub else ("TenantRequestsThrottled", "tenant")
    return ArmError(
        429,
        code,
        f"Number of 'read' requests for {who} exceeded. Please try again after '{retry_after_s}' seconds "
        "after additional tokens are available. Refer to https://aka.ms/arm-throttling",
        {**rate_headers, "Retry-After": str(retry_after_s)},
    )


def _server_error(status: int, rate_headers: dict[str, str]) -> ArmError:
    if status == 503:
        headers = {**rate_headers, "Retry-After": "1"}
        return ArmError(503, "ServiceUnavailable", "The service is temporarily unavailable.", headers)
    return ArmError(500, "InternalServerError", "Encountered an internal server error.", rate_headers)


def _forbidden(authorization: str, action: str, scope: str, rate_headers: dict[str, str]) -> ArmError:
    oid = _object_id(authorization)
    return ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{oid}' with object id '{oid}' does not have authorization to perform action '{action}' "
        f"over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials.",
        rate_headers,
    )


def serve(
    estate_path: str,
    host: str = LOOPBACK,
    port: int = 0,
    page_size: int = 100,
    faults: Faults | None = None,
    black_hole: bool = False,
) -> None:
    """Serve an estate file until Ctrl-C (`aib-audit emulate --estate FILE`). Binds loopback only."""
    from auditor.errors import UsageError

    if host not in (LOOPBACK, "localhost"):
        raise UsageError(f"the emulator binds 127.0.0.1 only, not {host!r}")
    snapshot = Snapshot.load(estate_path)  # validated, with one-line errors (exit 2)
    estate: dict[str, Any] | Snapshot = snapshot
    raw = json.loads(Path(estate_path).read_text(encoding="utf-8"))
    if isinstance(raw, dict) and raw.get("tenant") is not None:  # management groups and subscription states
        estate = {**snapshot.to_dict(), "tenant": raw["tenant"]}
    emulator = Emulator(estate, page_size=page_size, faults=faults)
    emulator.start(port)
    hole = BlackHole() if black_hole else None
    try:
        print(f"ARM emulator serving {estate_path}", flush=True)
        print(f"endpoint:  {emulator.endpoint}", flush=True)
        print(f"CA bundle: {emulator.ca_bundle}", flush=True)
        if emulator.faults.needs_decoy:
            emulator.decoy.on_hit = _print_hit
            print(f"decoy:     {emulator.decoy.endpoint} (foreign nextLinks and redirects point here)", flush=True)
        if hole is not None:
            print(f"black hole: {hole.endpoint} (accepts TCP, never answers)", flush=True)
        print(f"try:       REQUESTS_CA_BUNDLE={emulator.ca_bundle} aib-audit --arm-endpoint {emulator.endpoint} ...", flush=True)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        if hole is not None:
            hole.stop()
        emulator.stop()


def _print_hit(hit: DecoyHit) -> None:
    token = "WITH an Authorization header" if hit.authorization else "without a token"
    print(f"decoy:     {hit.method} {hit.path} arrived {token}", flush=True)
