"""The in-flight cap, without I/O: how a service's 429s lower it and accepted submits raise it."""

from __future__ import annotations

from batchrun.slots import Slots


def test_a_refusal_caps_at_what_the_service_holds_and_never_below_one():
    slots = Slots(8)
    assert slots.limit_to(3, now=0.0, hold=60.0) is True and slots.cap == 3
    assert slots.limit_to(5, now=1.0, hold=60.0) is False and slots.cap == 3  # never raised by a refusal
    assert slots.limit_to(0, now=2.0, hold=60.0) is True and slots.cap == 1


def test_the_cap_grows_back_one_slot_per_accepted_submit_after_the_hold():
    slots = Slots(4)
    slots.limit_to(2, now=100.0, hold=60.0)
    slots.accepted(now=159.0)
    assert slots.cap == 2  # still held
    for _ in range(5):
        slots.accepted(now=160.0)
    assert slots.cap == 4  # back to the configured cap, never past it


def test_a_refusal_during_the_probe_holds_the_cap_again():
    slots = Slots(10)
    slots.limit_to(3, now=0.0, hold=60.0)
    slots.accepted(now=60.0)
    assert slots.cap == 4
    slots.limit_to(3, now=61.0, hold=60.0)
    slots.accepted(now=100.0)
    assert slots.cap == 3
