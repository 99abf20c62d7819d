"""The in-flight cap, without I/O: how a service's 429s lower it, and how it is probed upward."""

from __future__ import annotations

import anyio

from batchrun.slots import Slots


class Time:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_refusal_caps_at_what_the_service_holds_and_never_below_one():
    slots = Slots(8, monotonic=Time())
    assert slots.limit_to(3, hold=60.0) is True and slots.cap == 3
    assert slots.limit_to(5, hold=60.0) is False and slots.cap == 3  # never raised by a refusal
    assert slots.limit_to(0, hold=60.0) is True and slots.cap == 1


def test_after_the_hold_a_slot_opens_without_waiting_for_a_job_to_finish():
    """One 429 (a rate limit, say) while one long job runs must not pin the run to that job."""
    clock = Time()
    slots = Slots(4, monotonic=clock)
    slots.take()  # the long job
    slots.limit_to(1, hold=60.0)

    async def acquire_after_hold() -> bool:
        with anyio.fail_after(5):
            clock.now = 60.0
            return await slots.acquire()

    assert anyio.run(acquire_after_hold) is True and slots.cap == 2 and slots.used == 2


def test_accepted_probes_open_the_cap_back_to_the_ceiling_and_a_refused_probe_holds_it():
    clock = Time()
    slots = Slots(5, monotonic=clock)
    for _ in range(2):
        slots.take()
    slots.limit_to(2, hold=60.0)
    slots.accepted()
    assert slots.cap == 2  # no probe out yet: an acceptance alone opens nothing

    async def probe() -> None:
        clock.now = 60.0
        await slots.acquire()

    anyio.run(probe)
    assert slots.cap == 3
    for _ in range(5):
        slots.accepted()
    assert slots.cap == 5  # the service took the probe: back to the configured cap, never past it
    slots.limit_to(3, hold=60.0)
    slots.accepted()
    assert slots.cap == 3  # refused again: held until the next probe
