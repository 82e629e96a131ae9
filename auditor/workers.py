"""The collector's worker threads: a bounded pool that can give up on a task and never holds the process.

`concurrent.futures.ThreadPoolExecutor` is the obvious choice and the wrong one here: its threads are joined when
the interpreter exits (and `with` waits for them), so one read stuck on a socket (a body drip-fed a byte at a
time outlives every socket timeout) keeps a finished, interrupted or timed-out audit alive. These workers are
daemon threads; a task the caller gives up on is abandoned, and a fresh worker takes its place so the pool keeps
its width. Results come back as ordinary `concurrent.futures.Future`s.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class Task(Generic[T]):
    fn: Callable[..., T]
    args: tuple[Any, ...]
    future: Future[T] = field(default_factory=Future)
    started: float | None = None  # time.monotonic() when a worker picked it up
    abandoned: bool = False  # the caller stopped waiting; its worker retires when (if ever) it returns

    def running_for(self, now: float) -> float | None:
        return None if self.started is None else now - self.started


class DaemonPool:
    def __init__(self, workers: int, name: str = "aib-audit") -> None:
        self._queue: queue.SimpleQueue[Task[Any] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._name = name
        self._spawned = 0
        self._closed = False
        for _ in range(max(1, workers)):
            self._spawn()

    def _spawn(self) -> None:
        with self._lock:
            self._spawned += 1
            name = f"{self._name}-{self._spawned}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            if not task.future.set_running_or_notify_cancel():
                continue
            task.started = time.monotonic()
            try:
                result = task.fn(*task.args)
            except BaseException as exc:  # noqa: BLE001 - handed to whoever waits on the future
                task.future.set_exception(exc)
            else:
                task.future.set_result(result)
            with self._lock:
                if task.abandoned:  # it came back late: its stand-in already took this seat
                    return

    def submit(self, fn: Callable[..., T], *args: Any) -> Task[T]:
        task: Task[T] = Task(fn, args)
        if self._closed:
            task.future.cancel()
        else:
            self._queue.put(task)
        return task

    def abandon(self, task: Task[Any]) -> None:
        """Stop waiting for `task`: cancel it if no worker has it yet, else let a new worker take its seat."""
        if task.future.cancel():
            return
        with self._lock:
            if task.future.done():
                return
            task.abandoned = True
        if not self._closed:
            self._spawn()

    def shutdown(self) -> None:
        """Cancel what has not started and let the workers end; never waits for a running task."""
        self._closed = True
        while True:
            try:
                task = self._queue.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                task.future.cancel()
        with self._lock:
            seats = self._spawned
        for _ in range(seats):
            self._queue.put(None)
