"""A real `batchrun run` killed (SIGKILL) or interrupted (Ctrl-C) at random moments, then resumed.

Run it and see the figures: ``python3 dev.py test tests/reliability -s``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from batchrun.sim import Latency
from batchrun.states import JobState
from batchrun.store import open_store, resolve_db_url

JOBS = 200


def write_manifest(folder: Path, name: str) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmodel: kling/kling-3.0/standard/image-to-video\noutput: {{dir: out}}\n"
        "defaults: {duration: 3, start_image_url: 'https://example.com/still.png', prompt: 'frame {n}'}\n"
        "matrix:\n  n: [" + ", ".join(str(i) for i in range(JOBS)) + "]\n"
    )
    return path


def start(manifest: Path, base_url: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "batchrun", "run", str(manifest), "--base-url", base_url,
                             "-c", "20", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "RUNCOMFY_API_TOKEN": "sim-token"})


def finish(manifest: Path, base_url: str, *extra: str) -> dict:
    result = subprocess.run([sys.executable, "-m", "batchrun", "run", str(manifest), "--base-url", base_url,
                             "-c", "20", "--json", *extra], capture_output=True, text=True, timeout=240,
                            env={**os.environ, "RUNCOMFY_API_TOKEN": "sim-token"})
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def wait_for_requests_or_exit(simulator, target: int, process: subprocess.Popen[str]) -> bool:
    """Block until the simulator has answered `target` requests (True) or the run ended first (False)."""
    while not simulator.wait_for_requests(target, timeout=0.25):
        if process.poll() is not None:
            return False
    return True


def check_outputs(manifest: Path, simulator) -> int:
    """Every job done, its file byte-identical to what was served, nothing partial; returns files checked."""
    store = open_store(resolve_db_url(None, manifest))
    try:
        campaign = store.get_campaign(manifest.stem)
        jobs = store.jobs_in_states(campaign.id, list(JobState), include_superseded=False)
    finally:
        store.close()
    assert [job.state for job in jobs] == [JobState.DONE] * JOBS
    served = simulator.served_files()
    for job in jobs:
        data = Path(job.output_path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == job.sha256 == served[job.result_urls[0]], job.key
    assert not list(manifest.parent.rglob("*.part"))
    return len(jobs)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(isolated_env, make_simulator):
    """10 kill -9 at random points of a 200-job run: every job done once, files intact, no .part."""
    rng = random.Random(4242)
    simulator = make_simulator(latency=Latency(kind="uniform", value=0.02, high=0.4), seed=9)
    manifest = write_manifest(isolated_env, "crash")
    kills = 0
    while kills < 10:
        # a random moment: after a random number of further requests of any kind (submits, polls,
        # downloads), so kills land in every phase of the run, not only in the opening burst
        stats = simulator.stats()
        if stats.completed >= JOBS:
            break
        process = start(manifest, simulator.base_url)
        target = sum(stats.requests.values()) + rng.randint(1, 60)
        reached = wait_for_requests_or_exit(simulator, target, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        kills += reached
    held = finish(manifest, simulator.base_url)["held_in_submitting"]  # resume under the default policy
    final = finish(manifest, simulator.base_url, "--on-unknown-submit=resubmit") if held else None
    duplicates = simulator.stats().duplicates()
    assert final is None or final["exit_code"] == 0
    assert duplicates <= len(held), (duplicates, held)
    files = check_outputs(manifest, simulator)
    print(f"\nSIGKILL figures: kills={kills} jobs={JOBS} held_in_submitting={len(held)} "
          f"duplicate_submissions={duplicates} files_verified={files}")
    assert kills >= 10


@pytest.mark.slow
def test_ctrl_c_at_random_moments_never_pays_twice(isolated_env, make_simulator):
    """Ctrl-C at random points: each run drains and exits 130; resuming finishes with no duplicate."""
    rng = random.Random(77)
    simulator = make_simulator(latency=Latency(kind="uniform", value=0.02, high=0.3), seed=3)
    manifest = write_manifest(isolated_env, "interrupt")
    interrupts = 0
    for _ in range(6):
        created = simulator.stats().jobs_created
        if created >= JOBS:
            break
        process = start(manifest, simulator.base_url)
        wait_for_requests_or_exit(simulator, sum(simulator.stats().requests.values()) + rng.randint(5, 80), process)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        assert process.returncode in (0, 130), out + err
        interrupts += process.returncode == 130
        assert "Traceback" not in err
    summary = finish(manifest, simulator.base_url)
    assert summary["exit_code"] == 0 and summary["held_in_submitting"] == []
    assert simulator.stats().duplicates() == 0
    files = check_outputs(manifest, simulator)
    print(f"\nCtrl-C figures: interrupts={interrupts} jobs={JOBS} duplicate_submissions=0 files_verified={files}")
    assert interrupts >= 3
