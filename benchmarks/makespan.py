"""a. makespan efficiency, b. HTTP requests per job, c. orchestrator CPU per job.

One campaign of N jobs with an in-flight cap C runs through the real ``Runner`` (in this process,
temp SQLite database and output folder) against the simulator in a child process, once per
latency distribution. Definitions:

- **ideal makespan**: the makespan of a perfect client on the *same sampled latencies*: jobs
  submitted in the same order into C slots, each slot refilled the instant its job finishes,
  zero overhead (greedy list scheduling of the simulator's seeded samples). For a fixed latency
  L this is exactly ceil(N/C)·L. **efficiency** = ideal / actual, actual = ``Runner.run`` wall
  time (resume queries, every submit, poll and download, the last file on disk).
- **requests per job**: every HTTP request the simulator saw (submit, status, result, cancel,
  file downloads) / N.
- **CPU per job**: user+sys CPU of this (the orchestrator) process during ``Runner.run`` / N;
  the simulator's CPU is its own process's. The baseline is a minimal httpx loop doing exactly
  submit, one result fetch after the known latency, one download to disk per job.
"""

from __future__ import annotations

import heapq
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from benchmarks.common import I2V, Result, SimProcess, cpu_seconds, write_manifest

TOKEN = "sim-token"


def greedy_makespan(latencies: list[float], slots: int) -> float:
    """Makespan of jobs started in order on ``slots`` slots, each refilled as soon as it frees."""
    free = [0.0] * min(slots, max(len(latencies), 1))
    end = 0.0
    for latency in latencies:
        start = heapq.heappop(free)
        heapq.heappush(free, start + latency)
        end = max(end, start + latency)
    return end


def run_campaign(base_url: str, jobs: int, concurrency: int, folder: Path) -> dict[str, Any]:
    """Plan ``jobs`` jobs into a fresh SQLite store and run them with the real Runner."""
    from batchrun import planning
    from batchrun.api import RunComfyClient
    from batchrun.api.client import api_lanes
    from batchrun.download import Downloader
    from batchrun.pool import Runner, RunOptions
    from batchrun.store import open_store

    manifest = write_manifest(folder, jobs)
    loaded = planning.load(manifest)
    store = open_store(f"sqlite:///{folder / 'bench.db'}")
    try:
        report = planning.plan_campaign(loaded, store)
        options = RunOptions(concurrency=concurrency)

        async def main() -> Any:
            async with RunComfyClient(base_url, TOKEN, max_connections=api_lanes(concurrency)) as client, Downloader(
                max_connections=options.downloads
            ) as downloader:
                runner = Runner(
                    store,
                    campaign_id=report.campaign_id,
                    campaign_name=loaded.name,
                    output_dir=report.output_dir or folder / "out",
                    client=client,
                    downloader=downloader,
                    options=options,
                )
                cpu = cpu_seconds()
                summary = await runner.run()
                return summary, cpu_seconds() - cpu

        summary, cpu = anyio.run(main)
    finally:
        store.close()
    done = summary.counts.get("done", 0)
    if done != jobs:
        raise RuntimeError(f"only {done} of {jobs} jobs done: {summary.failures[:3]} {summary.stop_reason}")
    return {"wall": summary.wall_seconds, "cpu": cpu}


def run_baseline(base_url: str, jobs: int, concurrency: int, latency: float, folder: Path) -> dict[str, Any]:
    """The least an orchestrator can do: submit, wait the known latency, fetch result, download."""
    out = folder / "baseline"
    out.mkdir()
    body = {"prompt": "a lighthouse", "start_image_url": "https://example.com/start.png", "duration": 3}

    async def one(client: httpx.AsyncClient, files: httpx.AsyncClient, index: int, limit: anyio.Semaphore) -> None:
        async with limit:
            answer = (await client.post(f"/v1/models/{I2V}", json={**body, "prompt": f"take {index}"})).json()
            await anyio.sleep(latency + 0.05)
            while True:
                result = (await client.get(f"/v1/requests/{answer['request_id']}/result")).json()
                if result["status"] == "completed":
                    break
                await anyio.sleep(0.05)
        url = result["output"]["video"]
        async with files.stream("GET", url) as response:
            with open(out / f"{index}.mp4", "wb") as handle:
                async for block in response.aiter_bytes():
                    handle.write(block)

    async def main() -> float:
        limit = anyio.Semaphore(concurrency)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=httpx.Limits(
            max_connections=concurrency + 4)) as client, httpx.AsyncClient() as files:
            cpu = cpu_seconds()
            async with anyio.create_task_group() as tg:
                for index in range(jobs):
                    tg.start_soon(one, client, files, index, limit)
            return cpu_seconds() - cpu

    started = time.perf_counter()
    cpu = anyio.run(main)
    return {"wall": time.perf_counter() - started, "cpu": cpu}


DISTRIBUTIONS = {
    # name: (full latency, quick latency)
    "fixed": ("fixed:3", "fixed:0.2"),
    "uniform": ("uniform:2-4", "uniform:0.1-0.3"),
    "lognormal": ("lognormal:2.5,0.5", "lognormal:0.17,0.5"),
}


def run(quick: bool) -> list[Result]:
    jobs, concurrency = (100, 10) if quick else (2000, 50)
    results: list[Result] = []
    cpu_per_job: dict[str, float] = {}
    for name, (full, small) in DISTRIBUTIONS.items():
        latency = small if quick else full
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp, SimProcess(latency=latency) as sim:
            measured = run_campaign(sim.base_url, jobs, concurrency, Path(tmp))
            stats = sim.stats()
        latencies = stats["latencies"]
        ideal = greedy_makespan(latencies, concurrency)
        requests = {k: v for k, v in stats["requests"].items() if v}
        total = sum(requests.values())
        mean = sum(latencies) / len(latencies)
        common = {
            "jobs": jobs,
            "concurrency": concurrency,
            "latency": latency,
            "ideal_s": round(ideal, 3),
            "actual_s": round(measured["wall"], 3),
            "ceil_n_c_times_mean_s": round(math.ceil(jobs / concurrency) * mean, 3),
            "jobs_created": stats["jobs_created"],
            "max_unfinished": stats["max_unfinished"],
        }
        results.append(Result(f"a. makespan efficiency ({name})", round(ideal / measured["wall"], 4), "ideal/actual",
                              0.95, higher_is_better=True, details=common))
        results.append(Result(f"b. HTTP requests per job ({name})", round(total / jobs, 3), "requests/job", 4.0,
                              details={"requests": requests, **common}))
        cpu_per_job[name] = measured["cpu"] / jobs * 1000
        results.append(Result(f"c. orchestrator CPU per job ({name})", round(cpu_per_job[name], 3), "ms/job", 1.0,
                              details={"cpu_s": round(measured["cpu"], 3), "simulator_cpu_s": round(stats["cpu"], 3),
                                       **common}))
    base_latency = 0.2 if quick else 1.0
    with tempfile.TemporaryDirectory(prefix="bench-baseline-") as tmp, SimProcess(
        latency=f"fixed:{base_latency}"
    ) as sim:
        baseline = run_baseline(sim.base_url, jobs, concurrency, base_latency, Path(tmp))
        stats = sim.stats()
    base_ms = baseline["cpu"] / jobs * 1000
    worst = max(cpu_per_job.values())
    # the comparison is with a loop "making the same requests": the fixed latency is the
    # distribution where batchrun makes the loop's 3 requests per job; the others poll more
    same = cpu_per_job["fixed"]
    results.append(Result("c. CPU per job vs minimal httpx loop (fixed: same requests)", round(same / base_ms, 2), "x",
                          None, details={
        "batchrun_ms_per_job_fixed": round(same, 3),
        "batchrun_ms_per_job_worst": round(worst, 3),
        "worst_ratio": round(worst / base_ms, 2),
        "baseline_ms_per_job": round(base_ms, 3),
        "baseline_requests_per_job": round(sum(stats["requests"].values()) / jobs, 3),
        "baseline_latency": f"fixed:{base_latency}",
    }))
    return results
