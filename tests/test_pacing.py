"""Per-subscription scheduling: lanes, seats lent while waiting, pacing to ARM's bucket, trigger reads started
as their template-list page arrives (auditor.workers, auditor.pacing, auditor.collect)."""

from __future__ import annotations

import threading
import time
from typing import Any

from auditor.azure import StaticTokenCredential
from auditor.collect import collect
from auditor.emulator import Faults
from auditor.pacing import Pacer, lane_of
from auditor.workers import DaemonPool, pause
from tests.conftest import StartEmulator
from tests.test_collect import SUB, assert_same_documents, fleet_estate


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lane_is_the_subscription_of_a_scope_or_url() -> None:
    assert lane_of(f"https://management.azure.com/subscriptions/{SUB.upper()}/resourceGroups/x?api-version=1") == SUB
    assert lane_of(f"/subscriptions/{SUB}/providers/Microsoft.Compute/galleries/g") == SUB
    assert lane_of("/") == lane_of("/providers/Microsoft.Management/managementGroups/mg") == ""


def test_a_lane_is_paced_only_once_arm_reported_its_bucket() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    for _ in range(500):  # no figure from ARM (a cassette, an emulator without throttle): never held back
        assert pacer.acquire("a") == 0.0
        pacer.observe("a", None, False, None)
    assert pacer.acquire("b") == 0.0
    pacer.observe("b", 2, False, None)  # ARM: two reads left
    assert pacer.acquire("b") == 0.0 and pacer.acquire("b") == 0.0
    assert pacer.acquire("b") == 0.04  # empty: the next token is 1/25 s away
    assert pacer.ready_at("b") == 100.04 and pacer.ready_at("a") == 0.0
    clock.now += 0.04
    assert pacer.acquire("b") == 0.0  # refilled at ARM's rate


def test_an_answer_older_than_the_estimate_can_only_lower_it() -> None:
    """ARM counts a request when it arrives, and answers come back out of order: the figure of a request sent
    before the one that set the estimate is stale and must not raise it (that sent bursts into 429s)."""
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.observe("a", 10, False, None)  # the lane is known: ten left
    clock.now += 0.01
    early = pacer.start("a")[1]
    clock.now += 0.01
    late = pacer.start("a")[1]
    assert pacer.acquire("a") == 0.0
    pacer.observe("a", 4, False, None, late)  # the later request's answer comes first: 4 left, 2 in flight
    pacer.observe("a", 6, False, None, early)  # then the earlier one's, counted before the others arrived
    assert pacer.acquire("a") == 0.0 and pacer.acquire("a") == 0.0  # what the newest figure left
    assert pacer.acquire("a") > 0.0  # not the stale 6 - 1 in flight
    pacer.observe("a", 0, False, None, early)  # a stale figure that is lower does count
    assert pacer.acquire("a") > 0.0


def test_a_figure_counts_the_earlier_requests_answered_before_it() -> None:
    """Two requests reach ARM in the other order than they were sent: the later one is counted first (4 left) and
    the earlier one after it (3 left), whose answer comes back first. The later request's figure, though newest by
    sending, is stale by one read that is no longer in flight; taking it whole sent a read into a 429 (CI)."""
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.observe("a", 5, False, None)  # five left
    first = pacer.start("a")[1]
    second = pacer.start("a")[1]
    assert first is not None and second is not None
    pacer.observe("a", 3, False, None, first)  # ARM counted `second` before it: 3 left, as our estimate says
    pacer.observe("a", 4, False, None, second)  # the figure `second` found, before `first` arrived
    assert pacer.acquire("a") == 0.0 and pacer.acquire("a") == 0.0 and pacer.acquire("a") == 0.0
    assert pacer.acquire("a") > 0.0  # three, not four


def test_the_estimate_never_refills_past_the_largest_bucket_arm_has_shown() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    pacer.observe("a", 9, False, None)  # a bucket of 10 (an emulator's, say), one read counted
    for _ in range(9):
        assert pacer.acquire("a") == 0.0
    clock.now += 60  # a minute idle: ARM's bucket holds 10, not the 250 of the documented default
    for _ in range(10):
        assert pacer.acquire("a") == 0.0
    assert pacer.acquire("a") > 0.0


def test_a_429_pauses_its_lane_for_retry_after_and_no_other() -> None:
    clock = Clock()
    woken: list[bool] = []
    pacer = Pacer(clock=clock)
    pacer.wake = lambda: woken.append(True)
    assert pacer.acquire("a") == 0.0 and pacer.acquire("b") == 0.0
    pacer.observe("b", 200, False, None)
    pacer.observe("a", 0, True, 3.0)
    assert woken and pacer.ready_at("a") == 103.0 and pacer.acquire("a") == 3.0
    assert pacer.ready_at("b") <= clock.now and pacer.acquire("b") == 0.0
    clock.now = 103.0
    assert pacer.acquire("a") == 0.0


def test_only_a_429_that_empties_the_bucket_within_the_wait_cap_pauses_a_lane() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, max_pause_s=20.0)
    for remaining, retry_after in ((None, 1.0), (0, 3600.0)):  # a provider's own limit; a wait aib-audit won't make
        assert pacer.acquire("a") == 0.0
        pacer.observe("a", remaining, True, retry_after)
        assert pacer.ready_at("a") < clock.now + 0.05  # at most a token's refill, not the Retry-After


def test_a_paused_lane_does_not_idle_the_others() -> None:
    pool = DaemonPool(1, ready=lambda lane: time.monotonic() + 60 if lane == "throttled" else 0.0)
    try:
        held = pool.submit(lambda: "held", lane="throttled")
        done = [pool.submit(lambda i=i: i, lane="other") for i in range(5)]
        assert [t.future.result(timeout=5) for t in done] == [0, 1, 2, 3, 4]
        assert not held.future.done()
    finally:
        pool.shutdown()


def test_a_waiting_read_lends_its_seat() -> None:
    """One seat: a task waiting out a Retry-After lets another subscription's task run meanwhile, and takes
    the seat back afterwards (never two running at once)."""
    pool = DaemonPool(1)
    running = 0
    most = 0
    lock = threading.Lock()
    order: list[str] = []

    def task(name: str, wait: float) -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        if wait:
            with lock:
                running -= 1
            order.append(f"{name} waits")
            assert pause(wait)
            with lock:
                running += 1
                most = max(most, running)
        order.append(f"{name} done")
        with lock:
            running -= 1

    try:
        slow = pool.submit(task, "a", 0.5, lane="a")
        time.sleep(0.1)
        fast = pool.submit(task, "b", 0.0, lane="b")
        fast.future.result(timeout=5)
        slow.future.result(timeout=5)
    finally:
        pool.shutdown()
    assert order == ["a waits", "b done", "a done"]
    assert most == 1


def test_an_abandoned_task_gives_its_seat_back() -> None:
    pool = DaemonPool(1)
    gate = threading.Event()
    try:
        stuck = pool.submit(gate.wait, 30)
        while stuck.started is None:
            time.sleep(0.01)
        pool.abandon(stuck)
        assert pool.submit(lambda: 7).future.result(timeout=5) == 7
    finally:
        gate.set()
        pool.shutdown()


def test_trigger_reads_start_while_the_template_list_is_still_paging(emulator: StartEmulator) -> None:
    estate = fleet_estate(12)
    emu = emulator(estate, page_size=2, faults=Faults(latency_ms=20))
    snap = collect([SUB], StaticTokenCredential(), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle, max_workers=16)
    assert snap.errors == []
    assert_same_documents(snap, estate)
    paths = [r.path.lower() for r in emu.requests]
    pages = [i for i, p in enumerate(paths) if p.endswith("/providers/microsoft.virtualmachineimages/imagetemplates")]
    triggers = [i for i, p in enumerate(paths) if p.endswith("/triggers")]
    assert len(pages) == 6 and len(triggers) == 12
    assert triggers[0] < pages[-1]  # the first page's templates were being read before the list ended
    # The snapshot keeps its order: triggers in the order of their templates.
    template_ids = [str(d["id"]).lower() for d in snap.resources["imageTemplates"]]
    trigger_templates = [str(d["id"]).lower().rsplit("/triggers/", 1)[0] for d in snap.resources["triggers"]]
    assert trigger_templates == template_ids


def test_a_template_list_that_fails_midway_leaves_no_trigger_behind(emulator: StartEmulator) -> None:
    estate = fleet_estate(6)
    # Page 1 of the template list links back to itself: the list fails after its first templates were queued.
    emu = emulator(estate, page_size=2, faults=Faults(loop_paths=("/imageTemplates",)))
    snap = collect([SUB], StaticTokenCredential(), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle)
    kinds = {e.kind for e in snap.errors}
    assert "imageTemplates" in kinds
    assert snap.resources.get("imageTemplates", []) == [] and snap.resources.get("triggers", []) == []
    assert "triggers" not in kinds


def test_three_throttled_subscriptions_are_read_in_parallel_without_429s(emulator: StartEmulator) -> None:
    """Each subscription has its own bucket: pacing to each keeps the reads flowing with (almost) no 429, and the
    time is bound by one bucket, not three in a row."""
    from fixtures.generate import generate

    subs: list[str] = []
    resources: dict[str, list[Any]] = {}
    for seed in (1, 2, 3):
        part = generate(40, seed=seed)
        subs += part["subscriptions"]
        for kind, docs in part["resources"].items():
            resources.setdefault(kind, []).extend(docs)
    estate = {**generate(1, seed=1), "subscriptions": subs, "resources": resources}
    # ARM's documented refill, which the pacer assumes (at another rate its estimate drifts between answers).
    faults = Faults(latency_ms=10, throttle=True, burst=10, refill_per_s=25.0)
    emu = emulator(estate, faults=faults)
    started = time.monotonic()
    snap = collect(subs, StaticTokenCredential(), arm_endpoint=emu.endpoint, connection_verify=emu.ca_bundle, max_workers=8)
    elapsed = time.monotonic() - started
    assert snap.errors == []
    per_sub_reads = max(sum(1 for r in emu.requests if lane_of(r.path) == s.lower()) for s in subs)
    assert emu.throttled <= 3, emu.throttled
    # One bucket's floor is (reads - burst) / refill; three buckets in a row would be three times that. Without
    # pacing the same run meets some 30 429s, each read that meets one waiting a whole second.
    floor = (per_sub_reads - 10) / 25.0
    assert elapsed < 2 * floor + 1, (elapsed, floor)
