"""auditor.heap: a run's collector does young collections only, and the setting is restored afterwards."""

from __future__ import annotations

import gc
import weakref

from auditor.heap import NEVER, young_collections_only


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cycle collector frees it


def test_full_collections_wait_and_young_cycles_are_still_freed() -> None:
    before = gc.get_threshold()
    with young_collections_only():
        assert gc.get_threshold()[2] == NEVER
        node = Node()
        gone = weakref.ref(node)
        del node
        gc.collect(0)  # what an automatic young collection does
        assert gone() is None
    assert gc.get_threshold() == before


def test_the_setting_is_restored_when_the_run_fails() -> None:
    before = gc.get_threshold()
    try:
        with young_collections_only():
            raise RuntimeError("the run failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
