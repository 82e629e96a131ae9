"""Pacing reads to ARM's throttle, one subscription at a time.

ARM throttles reads per subscription and principal with a token bucket (250 reads, refilled at 25 a second; the
same at tenant level) and says on every answer what is left in it: `x-ms-ratelimit-remaining-subscription-reads`
(`...-tenant-reads` for tenant-level reads, `...-subscription-global-reads` for the limit all principals share).
A 429 carries `Retry-After`. Sending past an empty bucket costs a wasted request and a whole-second Retry-After
per read in flight, while the bucket refills 25 reads a second: pacing to the bucket is faster than being throttled.

Each subscription is a lane with its own estimate: the last remaining-reads figure ARM gave (less the requests
still in flight, which it may not have counted yet, and those sent before it but answered meanwhile, which ARM may
have counted after it), refilled at the documented rate up to the largest bucket ARM has shown, and spent one per
request sent. A request whose lane has no token waits until one is due; a 429 that reports the bucket empty pauses its
lane for its Retry-After (one longer than aib-audit waits fails its read and pauses nothing). The
worker pool (auditor.workers) starts no new read in a lane that is not ready and lends the seat of a read that
waits, so one throttled subscription never idles the others. A lane ARM never reported a figure for (a cassette,
an emulator without its throttle) is not paced at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline import policies as core_policies

from auditor import ids

REFILL_PER_S = 25.0  # ARM's documented refill for subscription and tenant reads
BURST = 250.0
REMAINING_HEADERS = (
    "x-ms-ratelimit-remaining-subscription-reads",
    "x-ms-ratelimit-remaining-tenant-reads",
    "x-ms-ratelimit-remaining-subscription-global-reads",
)


def lane_of(scope_or_url: str) -> str:
    """The lane (throttle bucket) of an ARM ID, scope or request URL: its subscription, or "" (tenant-level)."""
    path = unquote(urlsplit(scope_or_url).path) if "://" in scope_or_url else scope_or_url
    return (ids.subscription_of(path) or "").lower()


@dataclass
class _Lane:
    known: bool = False  # ARM has reported this lane's bucket at least once
    tokens: float = 0.0
    stamp: float = 0.0
    paused_until: float = 0.0
    inflight: int = 0
    figure_sent_at: float = float("-inf")  # when the request whose answer set `tokens` was sent
    answered: int = 0  # answers received (with or without a figure)
    cap: float = 1.0  # the bucket is at least this big: the largest figure ARM gave, plus the read it counted


@dataclass(frozen=True)
class Sent:
    """A lane as a request found it when it was let go; its answer's figure is read against this."""

    at: float
    answered: int  # answers the lane had received by then
    ahead: int  # the lane's requests already in flight


class Pacer:
    """Per-lane bucket estimates; thread-safe. `wake` is called when a lane's state changes (the pool re-checks)."""

    def __init__(
        self,
        refill_per_s: float = REFILL_PER_S,
        burst: float = BURST,
        clock: Callable[[], float] = time.monotonic,
        max_pause_s: float = 20.0,
    ) -> None:
        self.refill_per_s = refill_per_s
        self.burst = burst
        self.max_pause_s = max_pause_s  # a longer Retry-After fails its read (Limits.max_retry_after_s), pauses nothing
        self.clock = clock
        self.wake: Callable[[], None] = lambda: None
        self.waits = 0  # requests that waited for a token (for the bench and tests)
        self._lock = threading.Lock()
        self._lanes: dict[str, _Lane] = {}

    def _lane(self, lane: str) -> _Lane:
        state = self._lanes.get(lane)
        if state is None:
            state = self._lanes[lane] = _Lane()
        return state

    def _refill(self, state: _Lane, now: float) -> None:
        cap = min(self.burst, state.cap)  # ARM's bucket, or a test's smaller one: refill past it sends into 429s
        state.tokens = min(cap, state.tokens + max(0.0, now - state.stamp) * self.refill_per_s)
        state.stamp = now

    def ready_at(self, lane: str) -> float:
        """When a new read in `lane` may start (time.monotonic()); the past when it may start now."""
        with self._lock:
            state = self._lanes.get(lane)
            if state is None or not state.known:
                return 0.0
            now = self.clock()
            self._refill(state, now)
            if state.tokens >= 1.0:
                return state.paused_until
            return max(state.paused_until, now + (1.0 - state.tokens) / self.refill_per_s)

    def acquire(self, lane: str) -> float:
        """Take a token for one request: 0.0 when it may go now, else the seconds to wait before asking again."""
        return self.start(lane)[0]

    def start(self, lane: str) -> tuple[float, Sent | None]:
        """`acquire`, and when the request may go, the lane as it found it (pass it to `observe`)."""
        with self._lock:
            state = self._lane(lane)
            now = self.clock()
            if state.known:
                if now < state.paused_until:
                    return state.paused_until - now, None
                self._refill(state, now)
                if state.tokens < 1.0:
                    self.waits += 1
                    return (1.0 - state.tokens) / self.refill_per_s, None
                state.tokens -= 1.0
            sent = Sent(now, state.answered, state.inflight)
            state.inflight += 1
            return 0.0, sent

    def observe(
        self, lane: str, remaining: int | None, throttled: bool, retry_after: float | None, sent: Sent | None = None
    ) -> None:
        """One answer (or none: remaining None, not throttled) to a request `start` let go as `sent`."""
        with self._lock:
            state = self._lane(lane)
            state.inflight = max(0, state.inflight - 1)
            now = self.clock()
            if remaining is not None:
                state.cap = max(state.cap, remaining + 1.0)
                # Requests sent before this one and answered since reach ARM in any order: ARM may have counted
                # them after this one, and they are no longer in flight. Under load that raised the estimate
                # past the bucket by a read or two (the three-subscription test met 4 429s on a busy machine).
                overtaken = min(sent.ahead, state.answered - sent.answered) if sent else 0
                figure = float(max(0, remaining - state.inflight - overtaken))
                sent_at = now if sent is None else sent.at
                if not state.known or sent_at >= state.figure_sent_at:
                    state.tokens, state.figure_sent_at = figure, sent_at
                else:
                    # Answers come back out of order: the figure of a request sent before the one that set the
                    # estimate is older than it, and may only lower it (taking it whole sent bursts into 429s).
                    self._refill(state, now)
                    state.tokens = min(state.tokens, figure)
                state.known = True
                state.stamp = now
            # Only a 429 that says the subscription's bucket is empty pauses the lane: one without the figure may
            # be a resource provider's own limit on one operation, which the read's own retries wait out.
            bucket_empty = throttled and remaining is not None and remaining <= 0
            state.answered += 1
            wait = retry_after if retry_after else 1.0
            if bucket_empty and wait <= self.max_pause_s:
                state.paused_until = max(state.paused_until, now + wait)
        if throttled:
            self.wake()


def _remaining(headers: Any) -> int | None:
    found: list[int] = []
    for name in REMAINING_HEADERS:
        value = headers.get(name)
        if value is not None:
            try:
                found.append(int(str(value).strip()))
            except ValueError:
                continue
    return min(found) if found else None


class PacingPolicy(core_policies.HTTPPolicy):  # type: ignore[type-arg]
    """Per attempt: wait for a token of the request's lane, send, and tell the pacer what ARM said.

    `wait(seconds)` sleeps for the pacing (the pipeline passes one that draws on the read's deadline and lends the
    worker's seat meanwhile); it raises when the read is out of time."""

    def __init__(self, pacer: Pacer, wait: Callable[[float], None]) -> None:
        super().__init__()
        self.pacer = pacer
        self.wait = wait
        self._retry_after = core_policies.RetryPolicy()  # only for its Retry-After parser

    def send(self, request: PipelineRequest) -> PipelineResponse:  # type: ignore[type-arg]
        lane = lane_of(request.http_request.url)
        while True:
            seconds, sent = self.pacer.start(lane)
            if sent is not None:
                break
            self.wait(seconds)
        try:
            response = self.next.send(request)
        except BaseException:
            self.pacer.observe(lane, None, False, None)
            raise
        http = response.http_response
        throttled = http.status_code == 429
        retry_after = self._retry_after.get_retry_after(response) if throttled else None
        self.pacer.observe(lane, _remaining(http.headers), throttled, retry_after, sent)
        return response
