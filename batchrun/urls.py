"""Small pure URL facts shared by the API client and the downloader."""

from __future__ import annotations

import ipaddress


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1) only.

    ``*.localhost`` names are NOT loopback here: nothing guarantees a resolver keeps them on this
    machine, so the token sent over plain http to one is warned about like any other host.
    """
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
