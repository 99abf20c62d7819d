"""Which hosts count as this machine for plain http (pure)."""

from __future__ import annotations

import pytest

from batchrun.urls import is_loopback_host


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "127.0.0.1", "127.8.9.10", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    """The simulator on this machine may be reached over plain http."""
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host", ["api.localhost", "evil.localhost.", "localhost.example.com", "10.0.0.1", "example.com", "::2"]
)
def test_names_that_may_leave_the_machine_are_not_loopback(host: str) -> None:
    """A *.localhost name (or anything else) is not this machine: plain http to it is warned about."""
    assert not is_loopback_host(host)
