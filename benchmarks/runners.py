"""Several runners on one PostgreSQL campaign: claim throughput and end-to-end makespan.

- claim throughput: R threads, each with its own Store, claim pending jobs in batches of 10
  under a campaign-wide cap and retire them at once (submit, record, fail: the writes a real
  runner makes), until none is left; jobs claimed per second, all runners together.
- makespan: R real ``batchrun run`` processes share an N-job campaign with a campaign-wide cap C
  against the simulator (fixed latency L, separate process); efficiency = ceil(N/C)*L / wall
  time, and the simulator's peak of unfinished jobs (must stay <= C).

Needs the PostgreSQL server (``BATCHRUN_BENCH_PG_URL``, default the local ``test`` database);
each scenario gets its own schema, dropped afterwards. Without a server the rows say so.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from benchmarks.common import PYTHON, Result, SimProcess

PG_URL = os.environ.get("BATCHRUN_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
T2V = "kling/kling-3.0/standard/text-to-video"


@contextmanager
def fresh_schema() -> Iterator[str]:
    admin = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    schema = f"batchrun_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.begin() as connection:
            connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        yield sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
            hide_password=False
        )
    finally:
        try:
            with admin.begin() as connection:
                connection.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            admin.dispose()


def reachable() -> str | None:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
        return None
    except Exception as error:  # noqa: BLE001 - any failure means: no server here
        return str(error).splitlines()[0]


def manifest(folder: Path, jobs: int) -> Path:
    path = folder / "shared.yaml"
    path.write_text(
        f"name: shared\nmodel: {T2V}\noutput: {{dir: out}}\ndefaults: {{duration: 3, prompt: 'wave {{n}}'}}\n"
        "matrix:\n  n: [" + ", ".join(str(i) for i in range(jobs)) + "]\n"
    )
    return path


def claim_throughput(runners: int, jobs: int) -> float:
    from batchrun import planning
    from batchrun.store import open_store

    with fresh_schema() as url, tempfile.TemporaryDirectory() as folder:
        loaded = planning.load(manifest(Path(folder), jobs))
        setup = open_store(url)
        campaign_id = planning.plan_campaign(loaded, setup).campaign_id
        setup.close()

        def work(name: str) -> None:
            store = open_store(url)
            try:
                while claimed := store.claim_pending(campaign_id, name, limit=10, cap=10_000, lease_seconds=60):
                    for job in claimed:
                        store.begin_submit(job.id)
                        store.record_submission(job.id, f"{name}-{job.id}")
                        store.mark_failed(job.id, "benchmark")
            finally:
                store.close()

        threads = [threading.Thread(target=work, args=(f"r{i}",)) for i in range(runners)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return jobs / (time.perf_counter() - started)


def makespan(runners: int, jobs: int, cap: int, latency: float) -> tuple[float, int]:
    with fresh_schema() as url, tempfile.TemporaryDirectory() as folder, SimProcess(
        latency=f"fixed:{latency}"
    ) as sim:
        path = manifest(Path(folder), jobs)
        env = {**os.environ, "RUNCOMFY_API_TOKEN": "sim-token"}
        subprocess.run([PYTHON, "-m", "batchrun", "plan", str(path), "--db", url], check=True, env=env,
                       capture_output=True)
        started = time.perf_counter()
        processes = [
            subprocess.Popen([PYTHON, "-m", "batchrun", "run", str(path), "--db", url, "--base-url", sim.base_url,
                              "-c", str(cap), "--lease", "10", "--json", "--no-verify"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(runners)
        ]
        for process in processes:
            _, err = process.communicate(timeout=1800)
            if process.returncode != 0:
                raise RuntimeError(f"a runner failed: {err[-500:]}")
        wall = time.perf_counter() - started
        stats = sim.stats()
        if stats["jobs_created"] != jobs:
            raise RuntimeError(f"{stats['jobs_created']} jobs created for {jobs}")
        return math.ceil(jobs / cap) * latency / wall, int(stats["max_unfinished"])


def run(quick: bool) -> list[Result]:
    problem = reachable()
    if problem is not None:
        return [Result("runners: PostgreSQL unavailable", 0, f"(skipped: {problem})")]
    counts = (1, 2) if quick else (1, 2, 4, 8)
    claim_jobs, jobs, cap, latency = (500, 60, 20, 0.5) if quick else (5000, 1000, 50, 2.0)
    results: list[Result] = []
    for runners in counts:
        results.append(Result(f"runners: claim throughput, {runners} runner(s)",
                              round(claim_throughput(runners, claim_jobs)), "jobs/s"))
    for runners in counts:
        efficiency, peak = makespan(runners, jobs, cap, latency)
        results.append(Result(f"runners: makespan efficiency, {runners} runner(s), N={jobs} C={cap} L={latency:g}s",
                              round(efficiency, 3), "ideal/actual",
                              details={"peak_unfinished_at_runcomfy": peak, "cap": cap}))
        results.append(Result(f"runners: peak jobs in flight at RunComfy, {runners} runner(s)", peak, "jobs",
                              target=cap))
    return results
