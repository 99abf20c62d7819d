"""Simulator fixtures, star-imported by ``conftest.py`` so every test directory sees them.

``simulator``: a started simulator with a fast fixed latency (0.05 s) and no faults.
``make_simulator(**SimConfig kwargs)``: a factory for anything else; all are stopped at teardown.
``sim_client``: an ``httpx.Client`` bound to ``simulator`` carrying its Bearer token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from batchrun.sim import Latency, SimConfig, Simulator

__all__ = ["make_simulator", "sim_client", "simulator", "FAST_LATENCY"]

FAST_LATENCY = Latency(kind="fixed", value=0.05)


@pytest.fixture
def make_simulator() -> Iterator[Callable[..., Simulator]]:
    """Start simulators from ``SimConfig`` keyword arguments (strings accepted for latency/faults)."""
    started: list[Simulator] = []

    def factory(**kwargs: Any) -> Simulator:
        from batchrun.sim import Faults

        if isinstance(kwargs.get("latency"), str):
            kwargs["latency"] = Latency.parse(kwargs["latency"])
        if isinstance(kwargs.get("faults"), str):
            kwargs["faults"] = Faults.parse(kwargs["faults"])
        kwargs.setdefault("latency", FAST_LATENCY)
        sim = Simulator(SimConfig(**kwargs)).start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def simulator(make_simulator: Callable[..., Simulator]) -> Simulator:
    """A running simulator: 0.05 s fixed latency, no faults, token ``sim-token``."""
    return make_simulator()


@pytest.fixture
def sim_client(simulator: Simulator) -> Iterator[httpx.Client]:
    """An httpx client for ``simulator`` with the right Authorization header."""
    with httpx.Client(
        base_url=simulator.base_url,
        headers={"Authorization": f"Bearer {simulator.config.token}"},
        timeout=10,
    ) as client:
        yield client
