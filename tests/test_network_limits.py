"""Issue 7, cases 1-4, in process: the collector against an emulator that misbehaves.

A read that loops, leaves the endpoint, never ends or asks to wait an hour becomes a recorded failure (ERROR in
the findings); no token reaches another host and nothing it answers is merged; every test is bounded in time.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import SansIOHTTPPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest

from auditor.audit import run_audit, select_checks
from auditor.azure import ArmClients, StaticTokenCredential
from auditor.collect import collect
from auditor.emulator import BlackHole, DecoyHit, Emulator, Faults
from auditor.errors import EndpointError
from auditor.findings import Status
from auditor.inventory import build_inventory
from auditor.limits import (
    FOREIGN_ENDPOINT,
    NEXT_LINK_LOOP,
    READ_TIMEOUT,
    RETRY_AFTER_TOO_LONG,
    RUN_TIMEOUT,
    TOO_MANY_PAGES,
    Limits,
)
from auditor.pipeline import (
    BoundedRetryPolicy,
    EndpointGuard,
    ForeignEndpointRefused,
    ReadBudget,
    ReadTimedOut,
    RetryAfterTooLong,
    ThrottleWait,
    same_origin,
)
from auditor.reads import Read, run_read
from auditor.reports import exit_code_for
from auditor.snapshot import Snapshot
from auditor.workers import DaemonPool
from tests.conftest import StartEmulator
from tests.test_collect import SUB, assert_same_documents, full_estate

# Small limits keep every test short; the defaults are what a scheduled job gets (auditor/limits.py).
FAST = Limits(read_timeout_s=2.0, connect_timeout_s=1.0, socket_timeout_s=1.0, max_retry_after_s=3.0, max_wait_s=4.0)
FAST_RETRY = {"retry_backoff_factor": 0.01}
LOCKS = "/providers/Microsoft.Authorization/locks"


def unlocked_estate() -> dict[str, Any]:
    """full_estate without any lock: AIB-LOCK-001 is FAIL for every template when the locks list is read."""
    estate = full_estate()
    estate["resources"]["locks"] = []
    return estate


def run(emu: Emulator, limits: Limits = FAST, **kwargs: Any) -> tuple[Snapshot, float]:
    started = time.monotonic()
    snap = collect(
        [SUB],
        StaticTokenCredential(),
        arm_endpoint=emu.endpoint,
        connection_verify=emu.ca_bundle,
        limits=limits,
        retry_options=FAST_RETRY,
        **kwargs,
    )
    return snap, time.monotonic() - started


def codes(snap: Snapshot, kind: str) -> set[str]:
    return {e.code for e in snap.errors if e.kind == kind}


def lock_statuses(snap: Snapshot) -> set[Status]:
    result = run_audit(build_inventory(snap), select_checks(["AIB-LOCK-001"]))
    return {f.status for f in result.findings}


# --------------------------------------------------------------------------------------------- case 1: loops


def test_a_self_looping_next_link_is_a_failed_read_not_an_endless_crawl(emulator: StartEmulator) -> None:
    emu = emulator(full_estate(), faults=Faults(loop_paths=(LOCKS,)))
    snap, elapsed = run(emu)
    assert codes(snap, "locks") == {NEXT_LINK_LOOP}
    assert elapsed < 15
    lock_requests = [r for r in emu.requests if "/locks" in r.path.lower()]
    assert len(lock_requests) <= 4  # the subscription list and the remote gallery's list: two pages each at most
    assert lock_statuses(snap) == {Status.ERROR}  # the loop is not a complete list: nothing passes on it
    assert_same_documents(snap, full_estate(), skip=("locks",))  # everything else was read


def test_a_list_longer_than_the_page_cap_is_a_failed_read(emulator: StartEmulator) -> None:
    estate = full_estate()
    emu = emulator(estate, page_size=1)
    snap, _ = run(emu, Limits(max_pages=2))
    assert TOO_MANY_PAGES in codes(snap, "resourceGroups")  # five resource groups, one per page
    snap_ok, _ = run(emu, Limits(max_pages=5))
    assert snap_ok.errors == []


# --------------------------------------------------------------------------------------------- case 2: ARM only


def test_a_foreign_next_link_gets_nothing_and_its_answer_is_not_merged(emulator: StartEmulator) -> None:
    clean, _ = run(emulator(unlocked_estate()))
    assert lock_statuses(clean) == {Status.FAIL}
    emu = emulator(unlocked_estate(), faults=Faults(foreign_link_paths=(LOCKS,)))
    snap, _ = run(emu)
    assert emu.decoy.requests == []  # not a request, let alone a token
    assert codes(snap, "locks") == {FOREIGN_ENDPOINT}
    assert snap.resources["locks"] == []
    # The decoy's CanNotDelete lock would have turned these FAILs into PASS; unread, they are ERROR.
    assert lock_statuses(snap) == {Status.ERROR}


def test_a_next_link_whose_host_depends_on_the_parser_gets_nothing(emulator: StartEmulator) -> None:
    """`https://decoy\\@endpoint/...`: urlsplit reads the endpoint, urllib3 (and requests) would connect to the
    decoy with the bearer token. Neither the page check nor the pipeline's guard may let it through."""
    emu = emulator(unlocked_estate(), faults=Faults(confusing_link_paths=(LOCKS,)))
    snap, _ = run(emu)
    assert emu.decoy.requests == []  # not a connection, let alone a token
    assert codes(snap, "locks") == {FOREIGN_ENDPOINT}
    assert lock_statuses(snap) == {Status.ERROR}
    with ArmClients(StaticTokenCredential(), emu.endpoint, emu.ca_bundle, limits=FAST) as arm:  # the guard alone
        op = arm.locks(SUB).management_locks.list_at_subscription_level
        outcome = run_read(Read("locks", f"/subscriptions/{SUB}", op), endpoint="", limits=FAST)
    assert outcome.failure is not None and outcome.failure.code == FOREIGN_ENDPOINT
    assert "reads differently to different parsers" in outcome.failure.message
    assert emu.decoy.requests == []


def test_a_redirect_to_another_host_is_refused_before_the_token_is_added(emulator: StartEmulator) -> None:
    emu = emulator(unlocked_estate(), faults=Faults(redirect_paths=(LOCKS,)))
    snap, _ = run(emu)
    assert emu.decoy.requests == []
    assert codes(snap, "locks") == {FOREIGN_ENDPOINT}
    assert any(r.status == 307 for r in emu.requests)
    assert lock_statuses(snap) == {Status.ERROR}


def test_the_pipeline_guard_alone_stops_a_foreign_next_link(emulator: StartEmulator) -> None:
    # Belt and braces: with the page check off (no endpoint given to the read), the policy still refuses the link.
    emu = emulator(unlocked_estate(), faults=Faults(foreign_link_paths=(LOCKS,)))
    with ArmClients(StaticTokenCredential(), emu.endpoint, emu.ca_bundle, limits=FAST) as arm:
        op = arm.locks(SUB).management_locks.list_at_subscription_level
        outcome = run_read(Read("locks", f"/subscriptions/{SUB}", op), endpoint="", limits=FAST)
    assert outcome.failure is not None and outcome.failure.code == FOREIGN_ENDPOINT
    assert "only " + emu.endpoint + " is trusted" in outcome.failure.message
    assert emu.decoy.requests == []


class _Spy(SansIOHTTPPolicy):  # type: ignore[type-arg]
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def on_request(self, request: Any) -> None:
        self.sent.append(request.http_request.url)


def test_the_guard_compares_scheme_host_and_port() -> None:
    endpoint = "https://management.azure.com"
    assert same_origin("https://MANAGEMENT.azure.com:443/subscriptions?x=1", endpoint)
    for other in (
        "http://management.azure.com/subscriptions",
        "https://management.azure.com:8443/subscriptions",
        "https://management.azure.com.evil.example/subscriptions",
        "https://graph.microsoft.com/v1.0/me",
        "https://evil.example:443\\@management.azure.com/subscriptions",  # urllib3 would connect to evil.example
        "https://management.azure.com\\x/subscriptions",
    ):
        assert not same_origin(other, endpoint), other
        spy = _Spy()
        pipeline = Pipeline(RequestsTransport(), policies=[EndpointGuard(endpoint), spy])  # type: ignore[arg-type]
        with pipeline, pytest.raises(ForeignEndpointRefused):
            pipeline.run(HttpRequest("GET", other))
        assert spy.sent == []  # refused before the next policy (the token's) ever saw it


# --------------------------------------------------------------------------------------------- case 3: no end


def test_a_response_that_never_comes_times_out_as_an_error(emulator: StartEmulator) -> None:
    emu = emulator(full_estate(), faults=Faults(hang_paths=("/triggers",)))
    snap, elapsed = run(emu)
    assert codes(snap, "triggers") == {READ_TIMEOUT}
    assert elapsed < FAST.read_timeout_s * 4
    assert_same_documents(snap, full_estate(), skip=("triggers",))


def test_a_drip_fed_body_is_stopped_by_the_wall_clock(emulator: StartEmulator) -> None:
    # One byte every 0.5 s is never silent for the 1 s socket timeout: only the read's deadline ends it.
    emu = emulator(full_estate(), faults=Faults(drip_paths=("/triggers",), drip_interval_s=0.5))
    snap, elapsed = run(emu)
    assert codes(snap, "triggers") == {READ_TIMEOUT}
    assert elapsed < FAST.read_timeout_s * 4


def test_the_run_timeout_turns_what_was_not_read_into_errors(emulator: StartEmulator) -> None:
    emu = emulator(full_estate(), faults=Faults(hang_paths=("/providers/",)))  # every list after phase 0 hangs
    limits = Limits(run_timeout_s=2.0, read_timeout_s=60.0, socket_timeout_s=60.0)
    snap, elapsed = run(emu, limits, max_workers=2)
    assert elapsed < 8
    assert snap.resources["imageTemplates"] == [] and snap.errors
    assert {e.code for e in snap.errors} <= {RUN_TIMEOUT}
    assert {"imageTemplates", "locks", "roleAssignments", "galleries"} <= {e.kind for e in snap.errors}
    result = run_audit(build_inventory(snap), select_checks())
    assert exit_code_for(result) == 3
    rows = [*result.findings, *result.extra_errors]
    assert rows and {f.status for f in rows} == {Status.ERROR}
    assert any("imageTemplates" in f.detail or "image templates" in f.detail for f in result.extra_errors)


def test_a_black_hole_endpoint_is_an_endpoint_error_within_seconds() -> None:
    with BlackHole() as hole:
        started = time.monotonic()
        with pytest.raises(EndpointError, match="cannot reach ARM endpoint .*timed out"):
            collect([SUB], StaticTokenCredential(), arm_endpoint=hole.endpoint, limits=FAST)
        assert time.monotonic() - started < 4 * FAST.connect_timeout_s + 2
        assert hole.accepted >= 1  # TCP was accepted: it is the TLS handshake that never came


def test_a_subscription_get_that_never_answers_is_an_endpoint_error(emulator: StartEmulator) -> None:
    emu = emulator(full_estate(), faults=Faults(hang_paths=(f"/subscriptions/{SUB}",)))
    started = time.monotonic()
    with pytest.raises(EndpointError, match=emu.endpoint):
        run(emu)
    assert time.monotonic() - started < FAST.read_timeout_s * 3


def test_transport_timeouts_reach_the_clients(emulator: StartEmulator) -> None:
    emu = emulator(full_estate())
    with ArmClients(StaticTokenCredential(), emu.endpoint, emu.ca_bundle, limits=FAST) as arm:
        config = arm.resources(SUB)._client._pipeline._transport.connection_config
    assert (config.timeout, config.read_timeout) == (FAST.connect_timeout_s, FAST.socket_timeout_s)


# --------------------------------------------------------------------------------------------- case 4: Retry-After


def test_an_hour_of_retry_after_fails_the_read_at_once(emulator: StartEmulator) -> None:
    emu = emulator(unlocked_estate(), faults=Faults(retry_after_paths=(LOCKS,), retry_after_s=3600))
    snap, elapsed = run(emu, Limits())  # the defaults: a scheduled job's
    assert codes(snap, "locks") == {RETRY_AFTER_TOO_LONG}
    assert elapsed < 10
    assert any("3600" in e.message for e in snap.errors)
    assert lock_statuses(snap) == {Status.ERROR}


def test_throttling_on_every_attempt_stops_at_the_waiting_allowance(emulator: StartEmulator) -> None:
    emu = emulator(full_estate(), faults=Faults(retry_after_paths=(LOCKS,), retry_after_s=1))
    limits = Limits(max_retry_after_s=5, max_wait_s=2.5, read_timeout_s=30)
    snap, elapsed = run(emu, limits)
    assert codes(snap, "locks") == {RETRY_AFTER_TOO_LONG}
    assert elapsed < 10


def test_transient_throttling_errors_and_resets_give_the_same_documents(emulator: StartEmulator) -> None:
    estate = full_estate()
    emu = emulator(estate, faults=Faults(throttle_rate=0.3, error_rate=0.05, reset_rate=0.05, seed=3))
    snap, _ = run(emu, Limits())
    assert snap.errors == []
    assert_same_documents(snap, estate)
    assert any(r.status == 429 for r in emu.requests)


def test_the_budget_refuses_waits_past_its_limits() -> None:
    budget = ReadBudget(Limits(max_retry_after_s=2, max_wait_s=0.3), time.monotonic() + 10)
    with pytest.raises(RetryAfterTooLong, match="retry after 5 s"):
        budget.wait(5, retry_after=True)
    budget.wait(0.2, retry_after=True)
    with pytest.raises(RetryAfterTooLong, match="waiting"):
        budget.wait(0.2, retry_after=False)
    late = ReadBudget(Limits(), time.monotonic() + 0.1)
    with pytest.raises(ReadTimedOut):
        late.wait(1, retry_after=True)


# --------------------------------------------------------------------------------------------- the workers


def test_the_pool_gives_up_on_a_stuck_task_and_keeps_its_width() -> None:
    release = threading.Event()
    pool = DaemonPool(1)
    try:
        stuck = pool.submit(release.wait, 30)
        deadline = time.monotonic() + 5
        while stuck.started is None and time.monotonic() < deadline:
            time.sleep(0.01)
        pool.abandon(stuck)
        quick = pool.submit(lambda: 42)
        assert quick.future.result(timeout=5) == 42  # a stand-in worker took the stuck one's seat
        workers = [t for t in threading.enumerate() if t.name.startswith("aib-audit-")]
        assert workers and all(t.daemon for t in workers)  # none of them can hold the process at exit
    finally:
        release.set()
        pool.shutdown()


class _FlakyHandler(BaseHTTPRequestHandler):
    """Answers 503 (no Retry-After) to the first `server.fail_first` requests, then 200."""

    server: _FlakyServer

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hits += 1
        failing = self.server.hits <= self.server.fail_first
        body = b"" if failing else b'{"value": []}'
        self.send_response(503 if failing else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return None


class _FlakyServer(ThreadingHTTPServer):
    hits = 0
    fail_first = 0


def test_a_burst_of_server_errors_outlasts_the_sdk_status_retries() -> None:
    # The SDK's RetryPolicy gives up after 3 status retries (4 attempts); ThrottleWait sends a GET again (2 rounds).
    server = _FlakyServer(("127.0.0.1", 0), _FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        server.fail_first = 6
        limits = Limits(max_wait_s=10)
        policies = [ThrottleWait(limits=limits), BoundedRetryPolicy(limits, retry_backoff_factor=0)]
        url = f"http://127.0.0.1:{server.server_address[1]}/subscriptions/x/resourcegroups"
        with Pipeline(RequestsTransport(), policies=policies) as pipeline:  # type: ignore[arg-type]
            response = pipeline.run(HttpRequest("GET", url)).http_response
        assert response.status_code == 200 and server.hits == 7
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------------------------- the emulator's faults


def test_the_emulator_serves_each_fault_as_described(emulator: StartEmulator) -> None:
    faults = Faults(
        loop_paths=("/resourcegroups",),
        foreign_link_paths=(LOCKS,),
        redirect_paths=("/galleries",),
        retry_after_paths=("/denyassignments",),
        retry_after_s=3600,
    )
    emu = emulator(full_estate(), faults=faults)
    headers = {"Authorization": "Bearer t"}

    def get(path: str) -> requests.Response:
        url = f"{emu.endpoint}/subscriptions/{SUB}{path}?api-version=2022-01-01"
        return requests.get(url, headers=headers, verify=emu.ca_bundle, allow_redirects=False, timeout=10)

    looped = get("/resourcegroups")
    assert looped.json()["nextLink"].startswith(f"{emu.endpoint}/subscriptions/{SUB}/resourcegroups?")
    assert get(["/resourcegroups", "$skiptoken=0"][0]).json()["nextLink"] == looped.json()["nextLink"]
    foreign = get(LOCKS).json()["nextLink"]
    assert foreign.startswith(emu.decoy.endpoint + "/")
    moved = get("/providers/Microsoft.Compute/galleries")
    assert moved.status_code == 307 and moved.headers["Location"].startswith(emu.decoy.endpoint + "/")
    throttled = get("/providers/Microsoft.Authorization/denyAssignments")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3600"
    # The decoy is a real TLS host the client trusts, and it sees a token when one is sent: the "nothing reached
    # it" assertions above are not vacuous.
    assert emu.decoy.requests == []
    requests.get(foreign, headers=headers, verify=emu.ca_bundle, timeout=10)
    assert emu.decoy.requests == [DecoyHit("GET", foreign[len(emu.decoy.endpoint) :], True)]
