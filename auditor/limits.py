"""How long an audit may take: the run, each read, each request, each Retry-After wait, each list's pages.

A scheduled job has nobody watching it, so every wait has an end. What runs out is a failed read (ERROR rows,
exit 3), never a hang: the defaults are generous for ARM, whose real reads answer in seconds and whose throttling
asks for waits of seconds. No SDK import here, so the CLI can name the defaults cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Reads in flight at once (--max-workers). ARM's limit is per subscription (auditor.pacing paces each one), so
# what bounds a wide audit is latency over the reads in flight, and past that the client's CPU. Measured on 2 cores
# (300 subscriptions x 30 templates, 50 ms latency, collected): 67 s with 16, 55 s with 24, 58 s with 32.
DEFAULT_WORKERS = 24

# Failure codes the collector records when a limit runs out (snapshot `errors[].code`).
READ_TIMEOUT = "ReadTimeout"  # one read (every page, retry and wait) took longer than read_timeout_s
RUN_TIMEOUT = "RunTimeout"  # the run's --timeout ran out before the read finished (or started)
RETRY_AFTER_TOO_LONG = "RetryAfterTooLong"  # ARM asked for a wait past max_retry_after_s, or waits past max_wait_s
FOREIGN_ENDPOINT = "ForeignEndpoint"  # a nextLink or redirect to another scheme, host or port than the endpoint
NEXT_LINK_LOOP = "NextLinkLoop"  # a nextLink back to a page of the same list that was already read
TOO_MANY_PAGES = "TooManyPages"  # a list longer than max_pages


def is_timeout(code: str) -> bool:
    """Whether a recorded failure is a read that ran out of time (ours, or the SDK's socket timeouts)."""
    return code in (READ_TIMEOUT, RUN_TIMEOUT) or "timeout" in code.lower()


@dataclass(frozen=True)
class Limits:
    """Every bound on time and size an audit keeps. Tests set them small; the CLI sets the first three."""

    run_timeout_s: float = 1800.0  # --timeout: the whole collection
    read_timeout_s: float = 300.0  # --read-timeout: one read, with all its pages, retries and waits
    connect_timeout_s: float = 5.0  # --connect-timeout: TCP connect and TLS handshake of one request
    socket_timeout_s: float = 60.0  # the longest silence while waiting for (or reading) one answer
    max_retry_after_s: float = 20.0  # a Retry-After longer than this fails the read at once instead of sleeping
    max_wait_s: float = 60.0  # total time one read may spend waiting between attempts (Retry-After and backoff)
    max_pages: int = 1000  # pages one list may have (1000 x ARM's page sizes is far beyond any subscription)
    max_redirects: int = 3  # ARM GETs do not redirect; a few same-endpoint hops are tolerated, never another host

    def __post_init__(self) -> None:
        for name in (
            "run_timeout_s",
            "read_timeout_s",
            "connect_timeout_s",
            "socket_timeout_s",
            "max_retry_after_s",
            "max_wait_s",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds (got {value!r})")
        if self.max_pages < 1:
            raise ValueError("max_pages must be >= 1")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be >= 0")
