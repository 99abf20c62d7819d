"""Several `batchrun run` processes sharing one campaign through PostgreSQL (skipped without a server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from batchrun.sim import Latency
from batchrun.states import JobState
from batchrun.store import open_store

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def manifest(folder: Path, jobs: int) -> Path:
    path = folder / "shared.yaml"
    path.write_text(
        "name: shared\nmodel: kling/kling-3.0/standard/text-to-video\noutput: {dir: out}\n"
        "defaults: {duration: 3, prompt: 'wave {n}'}\n"
        "matrix:\n  n: [" + ", ".join(str(i) for i in range(jobs)) + "]\n"
    )
    return path


def runner(path: Path, db: str, base_url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "batchrun", "run", str(path), "--db", db, "--base-url", base_url, "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "RUNCOMFY_API_TOKEN": "sim-token"},
    )


def done_count(db: str) -> dict[JobState, int]:
    store = open_store(db)
    try:
        return store.count_by_state(store.get_campaign("shared").id)
    finally:
        store.close()


def test_four_runners_share_one_campaign_and_one_cap(isolated_env, pg_url, make_simulator):
    """4 runners x 500 jobs: every job submitted exactly once, never more than -c in flight at RunComfy."""
    simulator = make_simulator(latency=Latency(kind="uniform", value=0.05, high=0.3), seed=1)
    path = manifest(isolated_env, 500)
    # 4 x 8 local slots > the campaign's 20: the cap is the database's to keep, and no runner can
    # hold all of it (a runner refills its own freed slots at once, so the first one would)
    extra = ("-c", "20", "--local-concurrency", "8", "--lease", "5")
    processes = [runner(path, pg_url, simulator.base_url, *extra) for _ in range(4)]
    summaries = []
    for process in processes:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err[-2000:]
        summaries.append(json.loads(out))
    stats = simulator.stats()
    assert stats.jobs_created == 500 and stats.duplicates() == 0
    assert stats.max_unfinished <= 20, stats.max_unfinished
    assert done_count(pg_url)[JobState.DONE] == 500
    submitted = [summary["submitted"] for summary in summaries]
    assert sum(submitted) == 500 and sum(1 for n in submitted if n > 0) >= 2  # the work really was shared
    print(f"\n4 runners: submitted per runner {submitted}, max in flight at RunComfy {stats.max_unfinished}/20")


def test_runners_sharing_a_campaign_share_its_budget(isolated_env, pg_url, make_simulator):
    """Two runners, one budget: together they submit what it pays for, not twice that."""
    simulator = make_simulator(latency=Latency(kind="fixed", value=0.05), seed=1)
    path = manifest(isolated_env, 40)  # standard text-to-video, 3 s with sound: $0.378 each
    extra = ("-c", "10", "--local-concurrency", "5", "--lease", "5", "--budget", "5.7")  # 15 jobs' worth
    processes = [runner(path, pg_url, simulator.base_url, *extra) for _ in range(2)]
    summaries = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 1, err[-2000:]  # stopped with jobs left pending
        summaries.append(json.loads(out))
    assert simulator.stats().jobs_created == 15
    counts = done_count(pg_url)
    assert counts[JobState.DONE] == 15 and counts[JobState.PENDING] == 25
    assert any("budget reached" in (summary["stop_reason"] or "") for summary in summaries)


def test_a_killed_runners_jobs_are_finished_by_the_others(isolated_env, pg_url, make_simulator):
    """SIGKILL one of three runners: after its leases expire the others poll its jobs; nothing is paid twice."""
    simulator = make_simulator(latency=Latency(kind="uniform", value=0.1, high=0.6), seed=2)
    path = manifest(isolated_env, 300)
    extra = ("-c", "15", "--lease", "1.5")
    victim = runner(path, pg_url, simulator.base_url, *extra)
    assert simulator.wait_for_jobs(10, timeout=60)
    survivors = [runner(path, pg_url, simulator.base_url, *extra) for _ in range(2)]
    assert simulator.wait_for_jobs(60, timeout=60)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    held: list[str] = []
    for process in survivors:
        out, err = process.communicate(timeout=240)
        assert process.returncode in (0, 1), err[-2000:]
        held += json.loads(out)["held_in_submitting"]
    counts = done_count(pg_url)
    # the victim's jobs at RunComfy were taken over and finished; only its POSTs caught mid-flight
    # (at most --submit-parallelism) are held, as the documented policy says
    assert counts[JobState.DONE] + counts[JobState.SUBMITTING] == 300
    assert counts[JobState.SUBMITTING] == len(set(held)) <= 4
    assert simulator.stats().duplicates() == 0
    store = open_store(pg_url)
    try:
        campaign = store.get_campaign("shared")
        taken = sum(1 for job in store.iter_jobs(campaign.id) for e in store.history(job.id) if e.kind == "taken_over")
    finally:
        store.close()
    final = subprocess.run(
        [sys.executable, "-m", "batchrun", "run", str(path), "--db", pg_url, "--base-url", simulator.base_url,
         "--on-unknown-submit=resubmit", "--json"],
        capture_output=True, text=True, timeout=240, env={**os.environ, "RUNCOMFY_API_TOKEN": "sim-token"},
    )
    assert final.returncode == 0, final.stderr[-2000:]
    assert done_count(pg_url)[JobState.DONE] == 300
    assert simulator.stats().duplicates() <= len(set(held))
    print(f"\nkilled runner: {taken} job(s) taken over by the survivors, {len(set(held))} held, "
          f"{simulator.stats().duplicates()} duplicate(s) after resubmitting the held ones")
