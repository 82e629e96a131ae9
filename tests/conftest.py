"""Shared pytest fixtures: an emulator factory (ARM on 127.0.0.1, stopped after the test) and a static token."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from auditor.azure import StaticTokenCredential
from auditor.emulator import Emulator, Faults

StartEmulator = Callable[..., Emulator]


@pytest.fixture
def emulator() -> Iterator[StartEmulator]:
    """`emulator(estate, page_size=100, faults=Faults(...))` starts one; every one is stopped after the test."""
    started: list[Emulator] = []

    def start(estate: dict[str, Any], page_size: int = 100, faults: Faults | None = None) -> Emulator:
        emu = Emulator(estate, page_size=page_size, faults=faults).start()
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


@pytest.fixture
def static_credential() -> StaticTokenCredential:
    return StaticTokenCredential("test-token")
