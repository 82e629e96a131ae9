"""One ARM read, and a batch of them under deadlines: the collector's read mechanics.

A read is one SDK operation (a GET, or a list with every page). It runs in a worker thread under a budget
(auditor.azure.read_budget): its retries, Retry-After waits and socket timeouts all draw on one deadline. Every
page it receives is checked before the SDK may follow the page's `nextLink`: a link to another scheme, host or
port than the ARM endpoint, back to a page already read, or past the page cap stops the read. Whatever stops a
read becomes a recorded failure (ERROR rows, exit 3), never an exception and never a merged answer.

The batch runner waits for reads against the wall clock: a read still running past its deadline (a body drip-fed
a byte at a time defeats every socket timeout) is given up on, and when the run's --timeout runs out every read
not done is recorded as timed out. The pool's daemon threads never hold the process (auditor.workers).
"""

from __future__ import annotations

import functools
import html
import json
import queue
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    DeserializationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.paging import ItemPaged
from azure.core.pipeline import PipelineResponse

from auditor.azure import credential_error
from auditor.errors import UsageError
from auditor.limits import NEXT_LINK_LOOP, READ_TIMEOUT, RUN_TIMEOUT, TOO_MANY_PAGES, Limits
from auditor.pacing import lane_of
from auditor.pipeline import (
    AMBIGUOUS,
    ForeignEndpointRefused,
    ReadLimitExceeded,
    RetryAfterTooLong,
    WriteRefused,
    origin,
    read_budget,
    same_origin,
)
from auditor.workers import DaemonPool, Task

Doc = dict[str, Any]

# How long past a read's deadline the runner waits for the worker to stop by itself (it usually does: no attempt
# starts past the deadline and socket timeouts are cut to it) before giving up on the thread.
GRACE_S = 0.5


class NextLinkLoop(ReadLimitExceeded):
    code = NEXT_LINK_LOOP


class TooManyPages(ReadLimitExceeded):
    code = TOO_MANY_PAGES


# --------------------------------------------------------------------------------------------- raw bodies


def _page_key(url: str) -> tuple[Any, ...]:
    """What makes two page URLs the same page to ARM: origin, path (case-insensitive) and query, api-version aside
    (the SDK sets its own on every nextLink it follows)."""
    parts = urlsplit(url)
    query = sorted((k.lower(), v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "api-version")
    return origin(url), unquote(parts.path).lower().rstrip("/"), tuple(query)


def _next_link(text: str) -> str | None:
    try:
        body = json.loads(text)
    except ValueError:
        return None  # reported as an unparseable body once the read ends
    link = body.get("nextLink") if isinstance(body, dict) else None
    return link if isinstance(link, str) and link.strip() else None


class Capture:
    """A `raw_response_hook`: keeps the body of every successful response of one operation (every page).

    The hook runs per attempt, so throttled or failed attempts are seen too and skipped here. For a list it is
    also the gate on paging: it runs before the SDK reads the page's `nextLink`, so raising here stops the pager
    before anything is sent to where the link points.
    """

    def __init__(self, endpoint: str = "", max_pages: int = 1000, single: bool = False, raw: bool = False) -> None:
        self.bodies: list[str] = []
        self.items: list[Doc] = []  # raw paging: every page's items, parsed once
        self.raw = raw
        self.last_status: int | None = None
        self.last_type = ""  # Content-Type and start of the last body: what to say when it is not ARM JSON
        self.last_head = ""
        self.endpoint = endpoint
        self.max_pages = max_pages
        self.single = single
        self._seen: set[tuple[Any, ...]] = set()

    def __call__(self, pipeline_response: PipelineResponse) -> None:  # type: ignore[type-arg]
        http = pipeline_response.http_response
        self.last_status = http.status_code
        self.last_type = str(http.headers.get("Content-Type") or "")
        if self.raw:  # raw paging: the page is taken (and checked) by accept_page, from the parsed body
            self.last_head = http.body()[:4096].decode("utf-8", "replace")
            return
        text = http.text()
        self.last_head = text[:4096]
        if http.status_code != 200:
            return
        self.bodies.append(text)
        if not self.single:
            self._check_paging(pipeline_response.http_request.url, _next_link(text))

    def accept_page(self, pipeline_response: PipelineResponse) -> str | None:  # type: ignore[type-arg]
        """Raw paging: keep one page's items (parsed once, by the pipeline's ContentDecodePolicy) and return the
        nextLink to follow, after the same loop, foreign-host and page-cap checks as the hook."""
        body = pipeline_response.context.get("deserialized_data")
        if not isinstance(body, dict):  # not JSON by its Content-Type: parse it ourselves, to say what it is
            body = _parse(pipeline_response.http_response.text())
        self.bodies.append("")  # counts the page; its items are kept parsed
        self.items.extend(_value_of(body))
        link = body.get("nextLink") if isinstance(body, dict) else None
        link = link if isinstance(link, str) and link.strip() else None
        self._check_paging(pipeline_response.http_request.url, link)
        return link

    def _check_paging(self, url: str, link: str | None) -> None:
        pages = len(self.bodies)
        self._seen.add(_page_key(url))
        if link is None:
            return
        if pages >= self.max_pages:
            raise TooManyPages(f"the list has more than {self.max_pages} pages; not followed further")
        if self.endpoint and not same_origin(link, self.endpoint):
            scheme, host, port = origin(link)
            where = f"{scheme}://{host}:{port}" if (scheme, host, port) != AMBIGUOUS else "a host that depends on who parses it"
            raise ForeignEndpointRefused(
                f"page {pages}'s nextLink points at {where}, not the ARM endpoint {self.endpoint}; "
                "not followed (nothing was sent there)"
            )
        key = _page_key(link)
        if key in self._seen:
            raise NextLinkLoop(f"page {pages}'s nextLink leads back to a page of this list already read; not followed")
        self._seen.add(key)


class _BadBody(ValueError):
    """A 200 response whose body is not the ARM document or page that was asked for."""


def _parse(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _BadBody(f"response body is not valid JSON: {exc}") from None


def _value_of(body: Any) -> list[Doc]:
    value = body.get("value") if isinstance(body, dict) else None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise _BadBody('list response has no "value" array of objects')
    return value


def _page_items(capture: Capture) -> list[Doc]:
    if capture.raw:
        return capture.items
    items: list[Doc] = []
    for text in capture.bodies:
        items.extend(_value_of(_parse(text)))
    return items


def raw_pager(pager: Any) -> Callable[[str | None], Any] | None:
    """The page fetcher inside an SDK pager: `get_next(next_link)` runs the client's own pipeline on the request
    the SDK builds (same URL, api-version and nextLink handling) and raises the SDK's HttpResponseError on a
    non-200, but leaves the body alone. Iterating the pager would also deserialize every item into a model the
    collector throws away (most of its CPU per read). Every generated ARM list operation returns
    `ItemPaged(get_next, extract_data)`; anything else (None here) is iterated the SDK's way."""
    args = getattr(pager, "_args", None) if isinstance(pager, ItemPaged) else None
    if not isinstance(args, tuple) or len(args) != 2 or not callable(args[0]):
        return None
    return args[0]  # type: ignore[no-any-return]


def _single_doc(capture: Capture) -> list[Doc]:
    if not capture.bodies:
        raise _BadBody("no response body")
    body = _parse(capture.bodies[-1])
    if not isinstance(body, dict) or not body.get("id"):
        raise _BadBody('response is not an ARM resource (no "id")')
    return [body]


# --------------------------------------------------------------------------------------------- one read


@dataclass
class Failure:
    status: int | None
    code: str
    message: str


@dataclass
class Read:
    """One ARM read: `op(*args, raw_response_hook=..., **kwargs)` is an SDK operation (a pager, or a GET
    when `single`); `scope` is what a failure is recorded against."""

    kind: str
    scope: str
    op: Callable[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    single: bool = False
    label: str = ""
    replace: bool = False  # the body replaces a listed copy of the same resource (Snapshot.put)
    # Called (in the read's worker) with each page's items as it arrives, before the next page is asked for.
    on_page: Callable[[list[Doc]], None] | None = field(default=None, repr=False, compare=False)

    def describe(self) -> str:
        return f"{self.label or self.kind} at {self.scope}"


@dataclass
class Outcome:
    read: Read
    docs: list[Doc] = field(default_factory=list)
    failure: Failure | None = None
    note: str = ""  # why an error answer was taken as an empty list (kept in the snapshot's meta)


# ARM errors on a list that prove there is nothing to list, rather than that the list could not be read:
# - MissingSubscriptionRegistration (409): the provider is not registered in the subscription, and ARM refuses to
#   unregister a provider that still has resources, so nothing of its types exists there.
# - AadPremiumLicenseRequired (400) on PIM lists: without Entra ID P2 (or ID Governance) the tenant cannot have
#   eligible role assignments at all. Without this, every tenant without P2 would get ERROR on every LP check.
_EMPTY_WHEN: dict[str, tuple[str, ...]] = {
    "MissingSubscriptionRegistration": (),  # any list
    "AadPremiumLicenseRequired": ("roleEligibilityScheduleInstances",),
}


def _means_empty(read: Read, failure: Failure) -> bool:
    if read.single or failure.code not in _EMPTY_WHEN:
        return False
    kinds = _EMPTY_WHEN[failure.code]
    return not kinds or read.kind in kinds


def one_line(text: object, limit: int = 500) -> str:
    out = re.sub(r"\s+", " ", str(text)).strip()
    return out if len(out) <= limit else out[: limit - 3] + "..."


_TITLE = re.compile(r"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)


def _not_json(content_type: str, head: str) -> str | None:
    """What came back instead of ARM JSON, in words (None when the body looks like JSON).

    A proxy's login page or a gateway's error page is HTML: saying so (and its title) points at the proxy, where
    the JSON parser's complaint or the SDK's exception text would only puzzle.
    """
    ctype = content_type.split(";")[0].strip().lower()
    start = head.lstrip()[:64].lower()
    if "html" in ctype or start.startswith(("<!doctype html", "<html", "<head", "<body")):
        m = _TITLE.search(head)
        title = one_line(html.unescape(m.group(1)), 80) if m else ""
        page = f'an HTML page titled "{title}"' if title else "an HTML page"
        return f"{page} came back instead of ARM JSON (Content-Type {ctype or 'not set'}): a proxy or gateway in the way?"
    if not head.strip():
        return "an empty body came back instead of ARM JSON"
    if "json" in ctype or not ctype:  # JSON that did not parse or has the wrong shape: the parser's words say more
        return None
    return f"a {ctype} body came back instead of ARM JSON, starting: {one_line(head, 80)}"


def _body_failure(status: int | None, capture: Capture, fallback: str) -> Failure:
    """A response whose body is not the ARM JSON asked for: say what came back when we can tell."""
    said = _not_json(capture.last_type, capture.last_head) if capture.last_status is not None else None
    return Failure(status, "InvalidResponseBody", said or one_line(fallback))


def http_failure(exc: HttpResponseError, capture: Capture | None = None) -> Failure:
    err = getattr(exc, "error", None)
    code = getattr(err, "code", None) or exc.reason or "HttpResponseError"
    message = getattr(err, "message", None) or str(exc.message or exc).splitlines()[0]
    if err is None and capture is not None and capture.last_status is not None:
        # No ARM error body: an HTML page (a proxy's login page) says more than "Operation returned an invalid status"
        message = _not_json(capture.last_type, capture.last_head) or message
    return Failure(exc.status_code, str(code), one_line(message))


def connection_reason(exc: BaseException) -> str:
    """`[Errno 111] Connection refused` or the SSL reason, not urllib3's object reprs."""
    text = str(exc)
    for pattern in (
        r"\[SSL[^\]]*\][^(]*",
        r"\[Errno -?\d+\][^'\")]*",
        r"Name or service not known|Temporary failure in name resolution",
        r"(?:Read|Connect|Connection) timed out",
    ):
        if m := re.search(pattern, text):
            return one_line(m.group(0).strip().rstrip(":"))
    return one_line(text.splitlines()[0] if text else type(exc).__name__, 200)


def run_read(read: Read, endpoint: str = "", limits: Limits | None = None, run_deadline: float | None = None) -> Outcome:
    """Run one read under its budget; every failure but a credential failure becomes a recorded outcome."""
    limits = limits or Limits()
    capture = Capture(endpoint, limits.max_pages, read.single)
    with read_budget(limits, label=read.describe(), run_deadline=run_deadline):
        return _run(read, capture)


def _pages(read: Read, result: Any, capture: Capture) -> None:
    """Drive a list to its last page: raw (each page's JSON as the pipeline parsed it) when the SDK pager allows,
    else the SDK's way (the hook keeps each page's body)."""
    get_next = raw_pager(result)
    if get_next is None:
        for _ in result:
            pass
        return
    capture.raw = True
    link: str | None = None
    while True:
        before = len(capture.items)
        link = capture.accept_page(get_next(link))
        if read.on_page is not None:
            read.on_page(capture.items[before:])
        if link is None:
            return


def _run(read: Read, capture: Capture) -> Outcome:
    try:
        result = read.op(*read.args, raw_response_hook=capture, **read.kwargs)
        if not read.single:
            _pages(read, result, capture)
        docs = _single_doc(capture) if read.single else _page_items(capture)
    except (UsageError, WriteRefused):
        raise
    except ReadLimitExceeded as exc:  # out of time, a wait too long, a nextLink or redirect not followed
        status = capture.last_status if isinstance(exc, RetryAfterTooLong) else None
        return Outcome(read, failure=Failure(status, exc.code, one_line(exc)))
    except ClientAuthenticationError as exc:
        if exc.response is None:  # the credential failed, not ARM: nothing else can be read either
            raise credential_error(exc) from None
        return Outcome(read, failure=http_failure(exc, capture))
    except DecodeError as exc:  # a subclass of HttpResponseError: the body did not parse
        return Outcome(read, failure=_body_failure(exc.status_code or capture.last_status, capture, exc.message))
    except HttpResponseError as exc:
        failure = http_failure(exc, capture)
        if _means_empty(read, failure):
            return Outcome(read, note=f"{read.kind} at {read.scope}: none can exist ({failure.code}: {failure.message})")
        return Outcome(read, failure=failure)
    except (ServiceRequestError, ServiceResponseError) as exc:
        return Outcome(read, failure=Failure(None, type(exc).__name__, connection_reason(exc)))
    except (_BadBody, DeserializationError, json.JSONDecodeError) as exc:
        return Outcome(read, failure=_body_failure(capture.last_status, capture, str(exc)))
    except Exception as exc:  # noqa: BLE001 - a body the SDK models choke on must not end the audit
        if capture.last_status is not None and _not_json(capture.last_type, capture.last_head):
            return Outcome(read, failure=_body_failure(capture.last_status, capture, str(exc)))
        return Outcome(read, failure=Failure(capture.last_status, type(exc).__name__, one_line(exc)))
    return Outcome(read, docs=docs)


# --------------------------------------------------------------------------------------------- a batch


def _tell(finished: queue.SimpleQueue[int], index: int, _future: object) -> None:
    finished.put(index)


class ReadRunner:
    """Runs reads on a DaemonPool and waits for them against the wall clock (per read, and the run's end)."""

    def __init__(self, pool: DaemonPool, endpoint: str, limits: Limits, run_deadline: float) -> None:
        self.pool = pool
        self.endpoint = endpoint
        self.limits = limits
        self.run_deadline = run_deadline

    def expired(self) -> bool:
        return time.monotonic() >= self.run_deadline

    def read_timed_out(self, read: Read) -> Outcome:
        message = f"no complete answer within the read's time limit ({self.limits.read_timeout_s:g} s)"
        return Outcome(read, failure=Failure(None, READ_TIMEOUT, message))

    def run_timed_out(self, read: Read) -> Outcome:
        message = f"not read before the run's time limit ({self.limits.run_timeout_s:g} s) ran out"
        return Outcome(read, failure=Failure(None, RUN_TIMEOUT, message))

    def submit(self, read: Read, first: bool = False) -> Task[Outcome]:
        """Queue one read in its subscription's lane (auditor.workers), at its head with `first`; safe from any
        thread, a worker's too."""
        lane = lane_of(read.scope)
        return self.pool.submit(run_read, read, self.endpoint, self.limits, self.run_deadline, lane=lane, first=first)

    def submit_first(self, reads: list[Read]) -> list[Task[Outcome]]:
        """Queue `reads` ahead of what already waits in their lanes, in their own order."""
        tasks = [self.submit(r, first=True) for r in reversed(reads)]
        tasks.reverse()
        return tasks

    def run(self, reads: list[Read], on_done: Callable[[int], None] | None = None) -> list[Outcome]:
        """Outcomes in submission order. `on_done(index)` is called as each read completes (for progress)."""
        if self.expired():
            return [self.run_timed_out(r) for r in reads]
        return self.wait(reads, [self.submit(r) for r in reads], on_done)

    def wait(self, reads: list[Read], tasks: list[Task[Outcome]], on_done: Callable[[int], None] | None = None) -> list[Outcome]:
        """Wait for submitted reads (`tasks[i]` runs `reads[i]`) against the wall clock; outcomes in that order."""
        results: list[Outcome | None] = [None] * len(tasks)
        pending = set(range(len(tasks)))
        # Completions arrive on a queue (O(1) each); the deadlines of what is still pending are swept at most every
        # second. Scanning every pending read on every completion made a batch of thousands quadratic.
        finished: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i, task in enumerate(tasks):
            task.future.add_done_callback(functools.partial(_tell, finished, i))

        def settle(i: int, now: float) -> None:
            outcome = self._settle(reads[i], tasks[i], now)
            if outcome is not None:
                results[i] = outcome
                pending.discard(i)
                if on_done is not None:
                    on_done(i)

        try:
            sweep_at = 0.0
            while pending:
                now = time.monotonic()
                if now >= sweep_at:
                    for i in sorted(pending):
                        settle(i, now)
                    sweep_at = now + self._next_check(tasks, pending) if pending else now
                    continue
                try:
                    i = finished.get(timeout=sweep_at - now)
                except queue.Empty:
                    continue
                if i in pending:
                    settle(i, time.monotonic())
        except BaseException:
            for task in tasks:  # e.g. the credential failed, or Ctrl-C: stop queued reads, wait for none
                self.pool.abandon(task)
            raise
        return [r for r in results if r is not None]

    def _settle(self, read: Read, task: Task[Outcome], now: float) -> Outcome | None:
        if task.future.done():
            return task.future.result()  # re-raises what must end the run (credential, write refused)
        if now >= self.run_deadline:
            self.pool.abandon(task)
            return self.run_timed_out(read)
        running = task.running_for(now)
        if running is not None and running >= self.limits.read_timeout_s + GRACE_S:
            self.pool.abandon(task)
            return self.read_timed_out(read)
        return None

    def _next_check(self, tasks: list[Task[Outcome]], pending: set[int]) -> float:
        now = time.monotonic()
        until = self.run_deadline - now
        for i in pending:
            running = tasks[i].running_for(now)
            if running is not None:
                until = min(until, self.limits.read_timeout_s + GRACE_S - running)
        # Re-check at least every second: a task may start (and its clock with it) while we wait.
        return max(0.01, min(until, 1.0))
