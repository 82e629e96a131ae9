"""The collector's worker threads: a bounded pool with a queue per subscription, that can give up on a task and
never holds the process.

`concurrent.futures.ThreadPoolExecutor` is the obvious choice and the wrong one here: its threads are joined when
the interpreter exits (and `with` waits for them), so one read stuck on a socket (a body drip-fed a byte at a
time outlives every socket timeout) keeps a finished, interrupted or timed-out audit alive. These workers are
daemon threads; a task the caller gives up on is abandoned, and its seat goes to another worker so the pool keeps
its width. Results come back as ordinary `concurrent.futures.Future`s.

ARM throttles reads per subscription, so one subscription being throttled must not idle the others:
- tasks queue per *lane* (a subscription, or "" for tenant-level reads) and workers take them round-robin from the
  lanes whose `ready(lane)` time has come (auditor.pacing says when a throttled subscription may read again);
- `workers` bounds the tasks *running* at once (seats), not the threads: a task that waits (ARM's Retry-After, or
  pacing to its subscription's bucket) calls `pause()`, which lends its seat to another worker for the wait and
  takes a seat back before it sends again. Threads are started as seats need them, up to `4 x workers`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")

THREADS_PER_SEAT = 4  # threads may outnumber seats while tasks wait; this bounds them


@dataclass(eq=False)
class Task(Generic[T]):
    fn: Callable[..., T]
    args: tuple[Any, ...]
    lane: str = ""
    future: Future[T] = field(default_factory=Future)
    started: float | None = None  # time.monotonic() when a worker picked it up
    abandoned: bool = False  # the caller stopped waiting; its worker retires when (if ever) it returns
    seated: bool = False  # holds one of the pool's seats right now

    def running_for(self, now: float) -> float | None:
        return None if self.started is None else now - self.started


_local = threading.local()  # the pool and task of the worker thread running it


def pause(seconds: float, deadline: float | None = None) -> bool:
    """Sleep `seconds` in the current task. In a pool worker the task's seat is lent to another worker meanwhile,
    and taken back before returning (waiting for one no later than `deadline`, time.monotonic()). False when no
    seat came back by then: the caller's read is out of time."""
    pool: DaemonPool | None = getattr(_local, "pool", None)
    task: Task[Any] | None = getattr(_local, "task", None)
    if pool is None or task is None:
        time.sleep(max(0.0, seconds))
        return True
    pool._lend(task)
    time.sleep(max(0.0, seconds))
    return pool._reclaim(task, deadline)


class DaemonPool:
    def __init__(self, workers: int, name: str = "aib-audit", ready: Callable[[str], float] | None = None) -> None:
        # One lock, two queues of waiters: idle workers wait for a task (`_cv`), paused tasks for a seat back
        # (`_seat_cv`). A freed seat wakes one waiter of the right kind; waking every worker on every answer (40
        # threads, 200 answers a second) cost more CPU than the reads.
        lock = threading.RLock()
        self._cv = threading.Condition(lock)
        self._seat_cv = threading.Condition(lock)
        self._name = name
        self._seats = max(1, workers)
        self._free = self._seats
        self._max_threads = THREADS_PER_SEAT * self._seats
        self._threads = 0  # live workers, abandoned ones not counted
        self._idle = 0  # workers waiting for a task
        self._resuming = 0  # paused tasks waiting for a seat back: they go before new tasks
        self._lanes: dict[str, deque[Task[Any]]] = {}
        self._turn: deque[str] = deque()  # round-robin order of the lanes
        self._ready = ready or (lambda _lane: 0.0)
        self._spawned = 0
        self._closed = False
        with self._cv:
            for _ in range(self._seats):
                self._spawn()

    def _spawn(self) -> None:  # under self._cv
        self._threads += 1
        self._spawned += 1
        threading.Thread(target=self._work, name=f"{self._name}-{self._spawned}", daemon=True).start()

    def _take(self, now: float) -> tuple[Task[Any] | None, float | None]:
        """The next task of a ready lane (round-robin), or None and how long until a paused lane is ready."""
        if self._free <= 0 or self._resuming > 0:
            return None, None
        soonest: float | None = None
        for _ in range(len(self._turn)):
            lane = self._turn.popleft()
            queue = self._lanes[lane]
            while queue and queue[0].future.cancelled():
                queue.popleft()
            if not queue:  # drained: out of the rotation until a task comes (300 idle lanes cost every worker a scan)
                del self._lanes[lane]
                continue
            self._turn.append(lane)
            at = self._ready(lane)
            if at > now:
                soonest = at if soonest is None else min(soonest, at)
                continue
            return queue.popleft(), None
        return None, (None if soonest is None else max(0.005, soonest - now))

    def _work(self) -> None:
        _local.pool = self
        while True:
            with self._cv:
                self._idle += 1
                while True:
                    if self._closed:
                        self._idle -= 1
                        self._threads -= 1
                        return
                    task, wait_s = self._take(time.monotonic())
                    if task is not None:
                        break
                    self._cv.wait(timeout=wait_s)
                self._idle -= 1
                if not task.future.set_running_or_notify_cancel():
                    continue
                self._free -= 1
                task.seated = True
                task.started = time.monotonic()
                if self._free > 0:
                    self._cv.notify()  # more seats and perhaps more tasks: pass the turn on
            _local.task = task
            try:
                result = task.fn(*task.args)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                task.future.set_exception(exc)
            else:
                task.future.set_result(result)
            finally:
                _local.task = None
            with self._cv:
                if task.abandoned:  # it came back late: its seat and thread were already given to others
                    return
                if task.seated:
                    task.seated = False
                    self._free += 1
                self._seat_freed()

    def _seat_freed(self) -> None:  # under self._cv: one waiter takes it, a paused task before a new one
        if self._free <= 0:
            return
        if self._resuming > 0:
            self._seat_cv.notify()
        else:
            self._cv.notify()

    def _lend(self, task: Task[Any]) -> None:
        with self._cv:
            if not task.seated:
                return
            task.seated = False
            self._free += 1
            if self._idle == 0 and self._threads < self._max_threads and not self._closed:
                self._spawn()
            self._seat_freed()

    def _reclaim(self, task: Task[Any], deadline: float | None) -> bool:
        with self._cv:
            self._resuming += 1
            try:
                while self._free <= 0 and not task.abandoned and not self._closed:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._seat_cv.wait(timeout=left)
                if task.abandoned or self._closed:
                    return True  # nobody waits for it any more; its own limits end it
                self._free -= 1
                task.seated = True
                return True
            finally:
                self._resuming -= 1
                self._seat_freed()

    def submit(self, fn: Callable[..., T], *args: Any, lane: str = "", first: bool = False) -> Task[T]:
        """Queue `fn(*args)` at the end of its lane, or with `first` at its head (before what already waits)."""
        task: Task[T] = Task(fn, args, lane)
        with self._cv:
            if self._closed:
                task.future.cancel()
                return task
            if lane not in self._lanes:
                self._lanes[lane] = deque()
                self._turn.append(lane)
            if first:
                self._lanes[lane].appendleft(task)
            else:
                self._lanes[lane].append(task)
            self._cv.notify()
        return task

    def abandon(self, task: Task[Any]) -> None:
        """Stop waiting for `task`: cancel it if no worker has it yet, else give its seat (and a thread) to others."""
        if task.future.cancel():
            return
        with self._cv:
            if task.future.done() or task.abandoned:
                return
            task.abandoned = True
            if task.seated:
                task.seated = False
                self._free += 1
            self._threads -= 1  # its thread may never come back
            if not self._closed and self._threads < self._seats:
                self._spawn()
            self._seat_freed()

    def wake(self) -> None:
        """Re-check the lanes now (a lane became ready earlier than its workers expected)."""
        with self._cv:
            self._cv.notify_all()

    def shutdown(self) -> None:
        """Cancel what has not started and let the workers end; never waits for a running task."""
        with self._cv:
            self._closed = True
            for queue in self._lanes.values():
                while queue:
                    queue.popleft().future.cancel()
            self._cv.notify_all()
            self._seat_cv.notify_all()
