"""Which misbehaviour, if any, one request gets: a pure draw from ``Faults`` and a seeded RNG.

Scope of each fault (what "per request of the affected kind" means here):

==================  =====================================================================
reset               any API or file request: the connection is aborted, nothing answered
server_error        any API or file request: 500 + 500001 JSON, or a bare 502/503 HTML page
rate_limit          any API or file request: 429, ``Retry-After`` on three answers in four
error_200           API requests (not files): HTTP 200 with ``{"error_code": 500001, ...}``
lost_submit         submits that pass validation: the job IS created, then the connection dies
truncated_download  file GETs: full ``Content-Length``, about half the body, then close
==================  =====================================================================

Faults are drawn before authentication and before any effect, so a faulted request (other than
``lost_submit``) changed nothing on the server. Requests to unknown paths are never faulted.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .config import Faults

#: Fault kinds drawn before the request is handled, in draw order.
EARLY = ("reset", "server_error", "rate_limit", "error_200")


@dataclass(frozen=True)
class ServerErrorAnswer:
    status: int
    json: bool  # False: a bare HTML-ish body as a proxy would send


def draw_early(faults: Faults, kind: str, rng: random.Random) -> str | None:
    """The fault to inject before handling a request of ``kind``, or None."""
    if kind == "other":
        return None
    for name in EARLY:
        p = getattr(faults, name)
        if name == "error_200" and kind == "file":
            continue
        if p > 0 and rng.random() < p:
            return name
    return None


def draw_late(faults: Faults, name: str, rng: random.Random) -> bool:
    """Whether the late fault ``name`` (lost_submit, truncated_download) hits this request."""
    p = getattr(faults, name)
    return p > 0 and rng.random() < p


def server_error_answer(rng: random.Random) -> ServerErrorAnswer:
    """Half the time a JSON 500001, otherwise a gateway's bare 502 or 503."""
    roll = rng.random()
    if roll < 0.5:
        return ServerErrorAnswer(500, json=True)
    return ServerErrorAnswer(502 if roll < 0.75 else 503, json=False)


def retry_after_header(faults: Faults, rng: random.Random) -> str | None:
    """``Retry-After`` in whole seconds, absent on one answer in four."""
    if rng.random() < 0.25:
        return None
    return str(math.ceil(faults.retry_after))


def truncate_at(size: int, rng: random.Random) -> int:
    """How many bytes a truncated download delivers: between a quarter and three quarters."""
    return max(1, min(size - 1, int(size * rng.uniform(0.25, 0.75))))
