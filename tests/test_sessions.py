"""The shared HTTP session (auditor.sessions.LeanSession): the pipeline's calls skip requests' per-call merging,
but what the environment says (proxies, CA bundle) still applies, requests' default headers are still sent, and
~/.netrc never replaces the bearer token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from auditor.azure import StaticTokenCredential
from auditor.collect import collect
from auditor.sessions import LeanSession
from tests.conftest import StartEmulator
from tests.test_collect import SUB, fleet_estate


class Capture(BaseAdapter):
    """An adapter that answers 200 and keeps what it was asked to send."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[requests.PreparedRequest, dict[str, Any]]] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append((request, kwargs))
        response = requests.Response()
        response.status_code = 200
        response._content = b"{}"
        response.request = request
        return response

    def close(self) -> None:
        pass


def _lean_with_capture() -> tuple[LeanSession, Capture]:
    session = LeanSession()
    capture = Capture()
    session.mount("https://", capture)
    return session, capture


def test_the_pipeline_call_keeps_requests_default_headers_and_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    session, capture = _lean_with_capture()
    response = session.request(
        "GET", "https://arm.example/subscriptions?api-version=1", headers={"Authorization": "Bearer t"}, allow_redirects=False
    )
    assert response.status_code == 200 and response.content == b"{}"
    sent, kwargs = capture.sent[0]
    assert sent.headers["Authorization"] == "Bearer t"
    assert "gzip" in sent.headers["Accept-Encoding"]  # compressed answers from ARM, as requests would ask
    assert sent.url == "https://arm.example/subscriptions?api-version=1"
    assert kwargs["verify"] is True and kwargs["stream"] is False


def test_proxies_and_ca_bundle_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not read here", encoding="utf-8")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "graph.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    session, capture = _lean_with_capture()
    session.request("GET", "https://arm.example/x", headers={}, allow_redirects=False)
    session.request("GET", "https://graph.example/y", headers={}, allow_redirects=False)
    (_, to_arm), (_, to_graph) = capture.sent
    assert to_arm["proxies"]["https"] == "http://proxy.example:3128" and to_arm["verify"] == str(bundle)
    assert "https" not in to_graph["proxies"]  # NO_PROXY honoured per host


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
    snap = collect([SUB], StaticTokenCredential(), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle)
    assert snap.errors == [] and len(snap.resources["imageTemplates"]) == 3


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
