"""Injected faults: latency, ARM's per-subscription read throttling, random 5xx, 403 scopes, broken bodies.

ARM throttles reads per subscription (and principal) with a token bucket: 250 tokens, refilled at 25 per
second; past it, 429 with `Retry-After` and `x-ms-ratelimit-remaining-subscription-reads`. Tenant-level
paths share one bucket.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from auditor.ids import norm, subscription_of

# `broken_paths` entries may pick their mode with a prefix; without one, truncated and text alternate per entry.
TRUNCATED = "truncated"
TEXT = "text"  # an HTML error page served as the JSON it should have been
HTML = "html"  # a proxy's sign-in page: 200, Content-Type text/html
_MODES = (TRUNCATED, TEXT)
_NAMED_MODES = (TRUNCATED, TEXT, HTML)


@dataclass(frozen=True)
class Faults:
    latency_ms: float = 0.0
    throttle: bool = False
    burst: int = 250
    refill_per_s: float = 25.0
    error_rate: float = 0.0
    forbidden_scopes: tuple[str, ...] = ()
    broken_paths: tuple[str, ...] = ()
    seed: int = 0
    # Monotonic seconds for the throttle buckets; tests pass a fake clock so that whether a read is throttled
    # does not depend on how fast the machine is. Not part of equality: a clock is not a setting.
    clock: Callable[[], float] = field(default=time.monotonic, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        if self.burst < 1:
            raise ValueError("burst must be >= 1")
        if self.refill_per_s <= 0:
            raise ValueError("refill_per_s must be > 0")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("error_rate must be between 0 and 1")
        # Accept lists from callers, keep the dataclass hashable.
        object.__setattr__(self, "forbidden_scopes", tuple(self.forbidden_scopes))
        object.__setattr__(self, "broken_paths", tuple(self.broken_paths))


@dataclass(frozen=True)
class ThrottleDecision:
    allowed: bool
    remaining: int
    retry_after_s: int = 0


class TokenBucket:
    """Continuous refill; one token per read."""

    def __init__(self, burst: int, refill_per_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._burst = float(burst)
        self._refill = refill_per_s
        self._tokens = float(burst)
        self._clock = clock
        self._stamp = self._clock()

    def take(self) -> ThrottleDecision:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._refill)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return ThrottleDecision(True, int(self._tokens))
        wait = math.ceil((1.0 - self._tokens) / self._refill)
        return ThrottleDecision(False, 0, max(1, wait))


class FaultInjector:
    """Thread-safe fault decisions for one emulator run (seeded, so runs repeat)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self._lock = threading.Lock()
        self._rng = random.Random(faults.seed)
        self._buckets: dict[str, TokenBucket] = {}
        self._broken_hits: dict[int, int] = {}
        self._forbidden = tuple(norm(s) for s in faults.forbidden_scopes if norm(s))
        self._broken = tuple(_parse_broken(entry) for entry in faults.broken_paths)

    def delay(self) -> None:
        if self.faults.latency_ms > 0:
            time.sleep(self.faults.latency_ms / 1000.0)

    def throttle(self, path: str) -> ThrottleDecision | None:
        """None when throttling is off; else whether this read may pass and what is left in its bucket."""
        if not self.faults.throttle:
            return None
        key = subscription_of(path) or "<tenant>"
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.faults.burst, self.faults.refill_per_s, self.faults.clock)
            return bucket.take()

    def server_error(self) -> int | None:
        """503 or 500 for `error_rate` of the requests; None otherwise."""
        if self.faults.error_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.faults.error_rate:
                return None
            return 503 if self._rng.random() < 0.5 else 500

    def forbidden_scope(self, path: str) -> str | None:
        """The configured scope that forbids this path, if any (segment-boundary prefix match)."""
        p = norm(path) or "/"
        for scope in self._forbidden:
            if p == scope or p.startswith(scope.rstrip("/") + "/"):
                return scope
        return None

    def broken_mode(self, path: str) -> str | None:
        """`truncated`, `text` or `html` when the path contains a broken_paths entry."""
        p = path.lower()
        for index, (mode, needle) in enumerate(self._broken):
            if needle and needle in p:
                if mode:
                    return mode
                with self._lock:
                    hits = self._broken_hits.get(index, 0)
                    self._broken_hits[index] = hits + 1
                return _MODES[hits % 2]
        return None


def _parse_broken(entry: str) -> tuple[str | None, str]:
    head, sep, rest = entry.partition(":")
    if sep and head.lower() in _NAMED_MODES:
        return head.lower(), rest.lower()
    return None, entry.lower()
