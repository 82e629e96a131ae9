"""The shared transport (auditor.transport.PooledTransport): requests is no longer in the way, but what the
environment says (proxies, CA bundle) still applies as requests reads it, requests' default headers are still
sent, failures are azure-core's errors, and ~/.netrc never replaces the bearer token."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import HttpRequest as LegacyRequest
from azure.core.rest import HttpRequest as RestRequest

from auditor.azure import StaticTokenCredential
from auditor.collect import collect
from auditor.graph import GraphSettings
from auditor.limits import Limits
from auditor.transport import PooledTransport
from tests.conftest import StartEmulator
from tests.test_collect import SUB, fleet_estate


class _Recorder(BaseHTTPRequestHandler):
    """Answers every request 200 with a small JSON body (CONNECT: 403) and keeps the request line and headers."""

    seen: list[tuple[str, str, dict[str, str]]] = []

    def _answer(self) -> None:
        self.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        status = 403 if self.command == "CONNECT" else 200
        body = b'{"value": []}' if status == 200 else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_CONNECT = _answer  # noqa: N815 - http.server's naming

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def recorder() -> Iterator[tuple[str, list[tuple[str, str, dict[str, str]]]]]:
    seen: list[tuple[str, str, dict[str, str]]] = []
    handler = type("Handler", (_Recorder,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_transport_sends_requests_default_headers_and_the_pipelines_own(
    recorder: tuple[str, list[tuple[str, str, dict[str, str]]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    where, seen = recorder
    transport = PooledTransport(True, Limits())
    try:
        for request in (RestRequest("GET", f"http://{where}/x?api-version=1", headers={"Authorization": "Bearer t"}),
                        LegacyRequest("GET", f"http://{where}/x?api-version=1", headers={"Authorization": "Bearer t"})):
            response = transport.send(request)
            assert response.status_code == 200 and json.loads(response.text()) == {"value": []}
    finally:
        transport.close()
    assert [(m, p) for m, p, _ in seen] == [("GET", "/x?api-version=1")] * 2
    for _, _, headers in seen:
        assert headers["authorization"] == "Bearer t"  # the pipeline's token, as it set it
        assert "gzip" in headers["accept-encoding"]  # compressed answers from ARM, as requests would ask
        assert "cookie" not in headers


def test_proxies_and_ca_bundle_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not read here", encoding="utf-8")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "graph.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    transport = PooledTransport(True, Limits())
    assert transport._settings("https", "arm.example", "https://arm.example/x", True) == (
        "http://proxy.example:3128",
        str(bundle),
    )
    assert transport._settings("https", "graph.example", "https://graph.example/y", True)[0] is None  # NO_PROXY
    # An explicit CA bundle (--arm-endpoint's emulator, tests) wins over the environment's, as in requests.
    assert transport._settings("https", "arm.example", "https://arm.example/x", "/etc/ca.pem")[1] == "/etc/ca.pem"


@pytest.mark.parametrize("scheme", ["http://", ""], ids=["with-scheme", "without-scheme-is-http"])
def test_an_https_request_goes_through_the_proxy_the_environment_names(
    recorder: tuple[str, list[tuple[str, str, dict[str, str]]]], monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    where, seen = recorder
    monkeypatch.setenv("HTTPS_PROXY", scheme + where)  # `127.0.0.1:port` alone means http://, as requests takes it
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    transport = PooledTransport(True, Limits())
    try:
        with pytest.raises(ServiceRequestError):  # the stand-in proxy refuses the tunnel
            transport.send(RestRequest("GET", "https://arm.example/subscriptions?api-version=1"))
    finally:
        transport.close()
    assert [(m, p) for m, p, _ in seen] == [("CONNECT", "arm.example:443")]  # tunnelled: the token never shows


def test_a_refused_connection_is_the_error_the_retry_policy_knows() -> None:
    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = PooledTransport(True, Limits())
    try:
        with pytest.raises(ServiceRequestError, match="Connection refused"):
            transport.send(RestRequest("GET", f"http://127.0.0.1:{port}/x"))
    finally:
        transport.close()


def test_a_netrc_entry_never_replaces_the_bearer_token(
    emulator: StartEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # requests' own session would send this password as Basic auth over the token (and ARM would answer 401).
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n", encoding="utf-8")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    emu = emulator(fleet_estate(3))
    graph = GraphSettings(emu.endpoint)  # Microsoft Graph too (the emulator serves it on the same host)
    snap = collect([SUB], StaticTokenCredential(), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle, graph=graph)
    assert snap.errors == [] and len(snap.resources["imageTemplates"]) == 3
    assert snap.meta["graph"]["calls"] >= 1 and snap.meta["graph"]["notes"] == []
    assert {r.status for r in emu.requests} == {200}


def test_every_client_runs_the_one_pinned_pipeline() -> None:
    """Clients differ only in their subscription: one pipeline (built once) serves them all, and it is the pinned
    read-only list, never the SDK's default (whose auto-registration policy POSTs)."""
    from azure.mgmt.core.policies import ARMAutoResourceProviderRegistrationPolicy

    from auditor.azure import ArmClients
    from auditor.pipeline import EndpointGuard, ReadOnlyGuard

    with ArmClients(StaticTokenCredential(), "https://127.0.0.1:1") as arm:
        clients = [arm.imagebuilder("a"), arm.imagebuilder("b"), arm.authorization("a"), arm.compute("b"), arm.subscriptions()]
        pipelines = {id(c._client._pipeline) for c in clients}
        assert len(pipelines) == 1
        run = [getattr(p, "_policy", p) for p in clients[0]._client._pipeline._impl_policies]
        assert any(isinstance(p, ReadOnlyGuard) for p in run) and any(isinstance(p, EndpointGuard) for p in run)
        assert not any(isinstance(p, ARMAutoResourceProviderRegistrationPolicy) for p in run)
        # Each client still builds its own URLs: the subscription is the client's, not the pipeline's.
        assert clients[0]._config.subscription_id == "a" and clients[1]._config.subscription_id == "b"


def test_a_legacy_response_decodes_as_requests_does() -> None:
    """The authorization SDK's responses: the Content-Type's charset, and bytes that do not decode never raise."""
    from auditor.transport import _LegacyResponse

    class Raw:
        status, reason = 200, "OK"

        def __init__(self, content_type: str) -> None:
            self.headers = {"Content-Type": content_type}

    request = LegacyRequest("GET", "https://arm.example/x")
    latin = _LegacyResponse(request, Raw("application/json; charset=iso-8859-1"), '{"name": "café"}'.encode("latin-1"))
    assert json.loads(latin.text()) == {"name": "café"}
    broken = _LegacyResponse(request, Raw("application/json"), b'{"name": "caf\xe9"}')
    assert json.loads(broken.text()) == {"name": "caf\ufffd"}
    bom = _LegacyResponse(request, Raw("application/json; charset=utf-8"), b'\xef\xbb\xbf{"a": 1}')
    assert json.loads(bom.text()) == {"a": 1}
