"""Shared pytest fixtures: an emulator factory (ARM on 127.0.0.1, stopped after the test) and a static token.

Also what keeps timing out of the tests (CI runs them on a busy 2-core machine): a fake clock for the emulator's
throttle buckets, a port that certainly refuses connections, and reading a child's output with a deadline.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import pytest

from auditor.azure import StaticTokenCredential
from auditor.emulator import Emulator, Faults
from auditor.emulator.faults import FaultInjector, ThrottleDecision

StartEmulator = Callable[..., Emulator]


@pytest.fixture
def emulator() -> Iterator[StartEmulator]:
    """`emulator(estate, page_size=100, faults=Faults(...))` starts one; every one is stopped after the test."""
    started: list[Emulator] = []

    def start(estate: dict[str, Any], page_size: int = 100, faults: Faults | None = None) -> Emulator:
        emu = Emulator(estate, page_size=page_size, faults=faults).start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def static_credential() -> StaticTokenCredential:
    return StaticTokenCredential("test-token")


# --- timing-proof helpers -------------------------------------------------------------------------------------


class FakeClock:
    """Monotonic seconds for `Faults(clock=...)`: stands still (no refill) until `advance()`d, or follows real
    time from the moment `follow_real_time()` is called. Thread-safe: the emulator reads it from handler threads."""

    def __init__(self, start: float = 1000.0) -> None:
        self._lock = threading.Lock()
        self._now = start
        self._real_since: float | None = None  # the real monotonic reading at which `_now` was current

    def __call__(self) -> float:
        with self._lock:
            if self._real_since is None:
                return self._now
            return self._now + (time.monotonic() - self._real_since)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def follow_real_time(self) -> None:
        with self._lock:
            if self._real_since is None:
                self._real_since = time.monotonic()

    @property
    def frozen(self) -> bool:
        with self._lock:
            return self._real_since is None


@pytest.fixture
def clock_until_throttled(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A clock that holds the throttle buckets still until the emulator refuses its first read, then runs in real
    time. While it stands still nothing refills, so the read after a bucket's burst is throttled however slow the
    machine is; afterwards Retry-After waits refill the bucket as they would at ARM, so the run still completes."""
    clock = FakeClock()
    original = FaultInjector.throttle

    def throttle(self: FaultInjector, path: str) -> ThrottleDecision | None:
        decision = original(self, path)
        if decision is not None and not decision.allowed and self.faults.clock is clock:
            clock.follow_real_time()
        return decision

    monkeypatch.setattr(FaultInjector, "throttle", throttle)
    return clock


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test: bound (so nothing else can take it) but never
    listening. Binding, closing and hoping the port stays free would race with every other process on the box."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def read_lines(stream: IO[str], count: int, timeout_s: float = 30.0) -> list[str]:
    """`count` lines from a child process's pipe, failing the test (instead of hanging the run) when they do not
    arrive within `timeout_s` or the child closes the pipe first. A daemon thread does the blocking reads; it ends
    when the pipe does (the caller kills the child in its `finally`)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for _ in range(count):
            line = stream.readline()
            lines.put(line)
            if not line:
                return

    threading.Thread(target=pump, name="read-lines", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    got: list[str] = []
    while len(got) < count:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            pytest.fail(f"the child printed {len(got)} of {count} lines within {timeout_s:.0f} s: {got!r}")
        if not line:
            pytest.fail(f"the child closed its output after {len(got)} of {count} lines: {got!r}")
        got.append(line)
    return got


@pytest.fixture(autouse=True)
def no_ambient_subscription(monkeypatch: pytest.MonkeyPatch) -> None:
    """AZURE_SUBSCRIPTION_ID is a scope when no flag gives one: a developer's shell must not change what tests see."""
    monkeypatch.delenv("AZURE_SUBSCRIPTION_ID", raising=False)
