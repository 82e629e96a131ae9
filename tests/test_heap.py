"""auditor.heap: a run's collector does young collections only, and the setting is restored afterwards."""

from __future__ import annotations

import gc
import weakref

import pytest

from auditor import cli
from auditor.heap import NEVER, UNTIL_EXIT, YOUNG, Keeper, young_collections_only


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
        kept = [[] for _ in range(3 * YOUNG)]  # allocations past the young threshold: no gc.collect() called
        assert gone() is None and len(kept) == 3 * YOUNG
    assert gc.get_threshold() == before


def test_the_setting_is_restored_when_the_run_fails() -> None:
    before = gc.get_threshold()
    try:
        with young_collections_only():
            raise RuntimeError("the run failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before


def test_the_console_script_leaves_its_heap_to_the_os(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() freezes the heap once the run is over (exit code unchanged): CPython's collection at shutdown then
    skips the run's cyclic inventory (1.2 s of a 3,000-template run's exit)."""
    frozen: list[int] = []
    monkeypatch.setattr(cli, "run", lambda argv: 3)
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    monkeypatch.setattr(cli.signal, "signal", lambda *a: None)  # main() installs a SIGTERM handler: not in pytest
    monkeypatch.setattr(UNTIL_EXIT, "on", False)  # main() turns it on; restored for the tests after this one
    with pytest.raises(SystemExit) as ended:
        cli.main()
    assert ended.value.code == 3 and frozen == [1] and UNTIL_EXIT.on


def test_only_the_command_line_keeps_a_run_until_the_process_exits(capsys: pytest.CaptureFixture[str]) -> None:
    """In-process runs (tests, a library caller) free their heap as usual; main() turns the keeper on."""
    from fixtures import demo
    from tests.test_cli import run

    code, _, err = run(capsys, "--snapshot", str(demo.PATH), "-f", "csv")
    assert code == 1, err
    assert not UNTIL_EXIT.on and UNTIL_EXIT._kept == []
    keeper = Keeper()
    keeper.keep("x")
    keeper.on = True
    keeper.keep("y")
    assert keeper._kept == ["y"]
