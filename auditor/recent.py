"""A small cache of the most recently used answers (the RBAC engine's per-scope answers)."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    """A cache of the `limit` most recently used answers.

    The engine's per-scope answers were kept for the whole audit, and most are about one template's own scopes
    (the template, its staging resource group, its identities), asked once per question: at 10,000 templates they
    were about 150 MiB of a run's peak. The scopes every template asks about (a subscription, a management group,
    a shared resource group) stay, being used again and again; a miss only recomputes one scope's answer.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        hit = self._items.pop(key, None)
        if hit is not None:
            self._items[key] = hit  # now the most recent
        return hit

    def put(self, key: K, value: V) -> V:
        self._items[key] = value
        if len(self._items) > self.limit:
            del self._items[next(iter(self._items))]  # the least recently used
        return value

    def __len__(self) -> int:
        return len(self._items)
