"""batchrun's benchmark suite (issue 6): how close a campaign runs to the physical limit.

Run it with ``python3 dev.py bench`` (or ``python -m benchmarks``); ``--quick`` runs everything at
tiny sizes, ``--only makespan,scale`` picks benchmarks, ``--json FILE`` says where the results go
(default ``benchmarks/results/latest.json``). Benchmarks are measurements, never timed tests.

Modules, one per benchmark:

- ``makespan``: a. makespan efficiency, b. HTTP requests per job, c. orchestrator CPU per job
  (and the ratio to a minimal hand-written httpx loop), for fixed, uniform and lognormal latencies;
- ``scale``: d. planning a 100,000-job manifest (time, peak RSS), ``status`` and resume start-up;
- ``download``: e. throughput of one large file against a raw httpx stream, and its memory.

The simulator always runs in a separate process (``benchmarks.simserver``) so the orchestrator's
CPU is measured alone; ``common`` holds what the benchmarks share.
"""

from __future__ import annotations
