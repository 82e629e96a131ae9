"""Injected faults: latency, ARM's per-subscription read throttling, random 5xx, 403 scopes, broken bodies, and
the misbehaviour an unattended audit must survive: paging that loops or leaves the endpoint, redirects to another
host, answers that never come or come a byte at a time, Retry-After waits of an hour, random 429s and resets.

Path faults (`*_paths`) apply to requests whose decoded path contains one of the entries (case-insensitive).

ARM throttles reads per subscription (and principal) with a token bucket: 250 tokens, refilled at 25 per
second; past it, 429 with `Retry-After` and `x-ms-ratelimit-remaining-subscription-reads`. Tenant-level
paths share one bucket. Resource Graph has its own per-user quota: 15 queries per 5-second window (a bucket of
15 refilled at 3 per second here), also only when `throttle` is on.
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
PATH_FAULTS = (
    "loop_paths",
    "foreign_link_paths",
    "confusing_link_paths",
    "redirect_paths",
    "hang_paths",
    "drip_paths",
    "retry_after_paths",
)


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
    loop_paths: tuple[str, ...] = ()  # lists whose every page has a nextLink back to that same page
    foreign_link_paths: tuple[str, ...] = ()  # lists whose nextLink points at the decoy (another port on loopback)
    # Lists whose nextLink names the emulator to one URL parser and the decoy to another:
    # `https://127.0.0.1:{decoy}\\@127.0.0.1:{emulator}/...` (urlsplit reads the emulator, urllib3 connects to the decoy).
    confusing_link_paths: tuple[str, ...] = ()
    redirect_paths: tuple[str, ...] = ()  # answered 307 to the same path on the decoy
    hang_paths: tuple[str, ...] = ()  # the request is read, and never answered
    drip_paths: tuple[str, ...] = ()  # answered one byte every `drip_interval_s`
    drip_interval_s: float = 2.0
    retry_after_paths: tuple[str, ...] = ()  # answered 429 with `Retry-After: retry_after_s`, every time
    retry_after_s: int = 3600
    throttle_rate: float = 0.0  # share of requests answered 429 with Retry-After: 1 (transient throttling)
    reset_rate: float = 0.0  # share of requests whose connection is dropped without an answer
    # Resource Graph answers `resultTruncated: true` with no $skipToken (a query over its row limit that cannot page).
    graph_truncated: bool = False
    graph_burst: int = 15  # Resource Graph: queries per user per window
    graph_refill_per_s: float = 3.0  # 15 per 5 s
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
        for name in ("error_rate", "throttle_rate", "reset_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.drip_interval_s <= 0:
            raise ValueError("drip_interval_s must be > 0")
        if self.retry_after_s < 0:
            raise ValueError("retry_after_s must be >= 0")
        # Accept lists from callers, keep the dataclass hashable.
        for name in PATH_FAULTS + ("forbidden_scopes", "broken_paths"):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def needs_decoy(self) -> bool:
        """A nextLink or redirect to another host needs that host: the emulator starts a decoy for it."""
        return bool(self.foreign_link_paths or self.confusing_link_paths or self.redirect_paths)


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

    def graph_quota(self) -> ThrottleDecision | None:
        """Resource Graph's per-user quota; None when throttling is off."""
        if not self.faults.throttle:
            return None
        with self._lock:
            bucket = self._buckets.get("<resourcegraph>")
            if bucket is None:
                bucket = TokenBucket(self.faults.graph_burst, self.faults.graph_refill_per_s, self.faults.clock)
                self._buckets["<resourcegraph>"] = bucket
            return bucket.take()

    def server_error(self) -> int | None:
        """503 or 500 for `error_rate` of the requests; None otherwise."""
        if self.faults.error_rate <= 0:
            return None
        with self._lock:
            if self._rng.random() >= self.faults.error_rate:
                return None
            return 503 if self._rng.random() < 0.5 else 500

    def _chance(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def reset(self) -> bool:
        """Whether to drop this request's connection without an answer (`reset_rate`)."""
        return self._chance(self.faults.reset_rate)

    def transient_throttle(self) -> bool:
        """Whether to answer this request 429 with Retry-After: 1 (`throttle_rate`)."""
        return self._chance(self.faults.throttle_rate)

    def on_path(self, fault: str, path: str) -> bool:
        """Whether the path fault `fault` (a `Faults` field name in PATH_FAULTS) applies to `path`."""
        p = path.lower()
        return any(entry and entry.lower() in p for entry in getattr(self.faults, fault))

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
