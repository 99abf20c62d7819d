"""The simulator for benchmarks, in its own process: ``python -m benchmarks.simserver ...``.

Prints ``listening on <base URL>``, then answers each ``stats`` line on stdin with one JSON line:
the simulator's request counts, every job's sampled latency in submission order, and this
process's CPU. EOF on stdin stops it. (``batchrun sim`` serves the same simulator; this wrapper
only adds the stats pipe, so the simulator itself stays simple.)
"""

from __future__ import annotations

import argparse
import json
import resource
import sys

from batchrun.sim import Latency, SimConfig, Simulator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", default="fixed:1")
    parser.add_argument("--capacity", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    config = SimConfig(latency=Latency.parse(args.latency), capacity=args.capacity, seed=args.seed)
    with Simulator(config) as sim:
        print(f"listening on {sim.base_url}", flush=True)
        for line in sys.stdin:
            if line.strip() != "stats":
                continue
            stats = sim.stats()
            with sim.engine.lock:
                jobs = [(j.created_at, j.latency) for j in sim.engine.jobs.values()]
            usage = resource.getrusage(resource.RUSAGE_SELF)
            print(json.dumps({
                "requests": dict(stats.requests),
                "jobs_created": stats.jobs_created,
                "completed": stats.completed,
                "failed": stats.failed,
                "max_unfinished": stats.max_unfinished,
                "latencies": [latency for _, latency in sorted(jobs)],
                "cpu": usage.ru_utime + usage.ru_stime,
            }), flush=True)


if __name__ == "__main__":
    main()
