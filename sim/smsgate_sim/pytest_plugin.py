"""Pytest fixtures: ``simulators`` (session, started once) and ``sims`` (reset per test).

Load with ``pytest_plugins = ["smsgate_sim.pytest_plugin"]`` in the root conftest, or import
the fixtures into a test module (``simulator_options``, ``simulators``, ``sims``).

``reset()`` restores the URLs given at start: to give every test a DLR/MO/keyword/inbox URL,
override ``simulator_options`` (keyword arguments of ``Simulators.start``) in a conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .simulators import Simulators


@pytest.fixture(scope="session")
def simulator_options() -> dict[str, Any]:
    """Keyword arguments for ``Simulators.start`` (override in a conftest)."""
    return {}


@pytest.fixture(scope="session")
def simulators(simulator_options: dict[str, Any]) -> Iterator[Simulators]:
    sims = Simulators.start(**{"host": "127.0.0.1", "seed": 0, **simulator_options})
    try:
        yield sims
    finally:
        sims.stop()


@pytest.fixture
def sims(simulators: Simulators) -> Iterator[Simulators]:
    """The session's simulators, reset to defaults before (and after) the test."""
    simulators.reset()
    yield simulators
    simulators.reset()  # wakes hanging handlers, drops pending receipts of this test
