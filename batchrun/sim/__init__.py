"""The embedded RunComfy simulator: the demo, the tests and the benchmarks run against it.

It speaks the protocol of ``shared/runcomfy/API.md`` over real HTTP on 127.0.0.1, including the
documented variations (alternative status spellings, ``output.videos``, errors inside HTTP 200,
2xx other than 200), and injects faults on demand. It shares ``batchrun.protocol`` (constants)
with the client and none of the client's logic.

::

    with Simulator(SimConfig(latency=Latency.parse("manual"))) as sim:
        ...  # point the client at sim.base_url with token "sim-token"
        sim.finish()
        assert sim.stats().authorization_headers_on_files == 0

Modules: ``config`` (settings), ``engine`` (jobs, lazy states, injectable clock), ``checker``
(input validation from the schema files), ``faults`` (what goes wrong), ``files`` (result MP4s),
``app`` (routing and bodies), ``http`` (h11 over asyncio), ``server`` (thread and CLI).
"""

from __future__ import annotations

from .config import PRICE_PER_JOB_USD, Faults, Latency, SimConfig
from .engine import Engine, SimStats
from .server import Simulator, build_parser, main, serve_forever

__all__ = [
    "PRICE_PER_JOB_USD",
    "Engine",
    "Faults",
    "Latency",
    "SimConfig",
    "SimStats",
    "Simulator",
    "build_parser",
    "main",
    "serve_forever",
]
