"""Nothing lost, nothing paid twice, under every fault the simulator can inject.

Run it and see the figures: ``python3 dev.py test tests/reliability -s``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import anyio

from batchrun import planning
from batchrun.api import RunComfyClient
from batchrun.download import Downloader
from batchrun.pool import Runner, RunOptions, UnknownSubmitPolicy
from batchrun.retry import RetryPolicy
from batchrun.sim import Faults, Latency
from batchrun.sim.engine import FAILURE_MESSAGES
from batchrun.states import JobState
from batchrun.store import open_store, resolve_db_url

JOBS = 500
FAST_RETRY = RetryPolicy(max_attempts=12, base=0.005, cap=0.05, max_elapsed=60, retry_after_cap=0.05)
FAULTS = Faults(server_error=0.10, rate_limit=0.05, retry_after=0, reset=0.05, lost_submit=0.02,
                truncated_download=0.10, error_200=0.05)


def write_manifest(folder: Path) -> Path:
    path = folder / "chaos.yaml"
    path.write_text(
        "name: chaos\nmodel: kling/kling-3.0/standard/text-to-video\noutput: {dir: out}\n"
        "defaults: {duration: 3, prompt: 'a storm over {city}, shot {n}'}\n"
        "matrix:\n  city: [" + ", ".join(f"c{i}" for i in range(25)) + "]\n"
        "  n: [" + ", ".join(str(i) for i in range(JOBS // 25)) + "]\n"
    )
    return path


def run_once(store, campaign_id: int, output_dir: Path, simulator, **options) -> object:
    async def main():
        async with RunComfyClient(simulator.base_url, "sim-token", retry=FAST_RETRY, max_connections=60) as client, \
                Downloader(retry=FAST_RETRY) as downloader:
            runner = Runner(store, campaign_id=campaign_id, campaign_name="chaos", output_dir=output_dir,
                            client=client, downloader=downloader, options=RunOptions(**options))
            return await runner.run()

    return anyio.run(main)


def test_faulty_service_loses_nothing_and_pays_twice_only_for_lost_answers(isolated_env, make_simulator):
    """500 jobs under 5xx, 429, resets, lost answers, truncated downloads and 200-with-error all finish."""
    simulator = make_simulator(seed=20261121, latency=Latency(kind="uniform", value=0.02, high=0.2),
                               failure_rate=0.05, faults=FAULTS)
    manifest = write_manifest(isolated_env)
    campaign = planning.load(manifest)
    store = open_store(resolve_db_url(None, manifest))
    report = planning.plan_campaign(campaign, store)
    output_dir = report.output_dir
    summary = run_once(store, report.campaign_id, output_dir, simulator, concurrency=50,
                       unknown_submit=UnknownSubmitPolicy.RESUBMIT)
    stats = simulator.stats()
    jobs = store.jobs_in_states(report.campaign_id, list(JobState), include_superseded=False)

    # every job ends done or failed, and failed only where RunComfy's generation failed
    assert {job.state for job in jobs} <= {JobState.DONE, JobState.FAILED}, summary
    failed = [job for job in jobs if job.state is JobState.FAILED]
    for job in failed:
        assert simulator.job_status(job.request_id) == "failed", job
        assert job.error in FAILURE_MESSAGES
    done = [job for job in jobs if job.state is JobState.DONE]
    assert all(simulator.job_status(job.request_id) == "completed" for job in done)
    assert len(done) + len(failed) == JOBS

    # every file is exactly what RunComfy served; nothing half-written is left
    served = simulator.served_files()
    for job in done:
        data = Path(job.output_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == job.sha256 == served[job.result_urls[0]]
    assert not list(output_dir.rglob("*.part"))

    # the only jobs paid twice are those whose submit answer was lost, resubmitted under the policy
    lost = stats.faults_injected["lost_submit"]
    duplicates = stats.duplicates()
    assert duplicates <= lost
    assert stats.faults_injected["server_error"] > 0 and stats.faults_injected["truncated_download"] > 0

    # `batchrun retry --failed` reruns exactly the failed ones
    simulator.set_faults(Faults())
    simulator.set_failure_rate(0.0)
    created_before = stats.jobs_created
    retry = subprocess.run([sys.executable, "-m", "batchrun", "retry", str(manifest), "--failed", "--json"],
                           capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert retry.returncode == 0, retry.stderr
    rerun = run_once(store, report.campaign_id, output_dir, simulator, concurrency=50)
    after = simulator.stats()
    assert after.jobs_created - created_before == len(failed)
    retried_keys = {job.key for job in failed}
    now_done = {job.key for job in store.jobs_in_states(report.campaign_id, [JobState.DONE], include_superseded=False)}
    assert retried_keys <= now_done and rerun.counts[JobState.DONE] == JOBS
    store.close()

    figures = {
        "jobs": JOBS,
        "faults injected": dict(stats.faults_injected),
        "generation failures": len(failed),
        "done": len(done),
        "files verified (sha256 = served)": len(done),
        "lost submit answers": lost,
        "duplicate submissions": duplicates,
        "requests": dict(stats.requests),
        "retry --failed resubmitted": after.jobs_created - created_before,
    }
    print("\nfault-injection figures:\n" + json.dumps(figures, indent=2))
