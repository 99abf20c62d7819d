"""d. scale: plan a 100,000-job manifest; ``status`` and resume start-up on the resulting database.

- **plan + insert**: ``batchrun plan MANIFEST --db DB --json`` as a child process (a fresh
  database): wall time and peak RSS from ``os.wait4`` (what ``/usr/bin/time -v`` reports).
  The manifest is a 50 x 50 x 40 text-to-video matrix. A second plan (nothing changed) is shown too.
  The same for a 100,000-row image-to-video CSV (one job per row, each with its own id, prompt
  and image URL), the other way a big campaign is written.
- **status start-up**: in a fresh child process, the time from opening the store to having the
  counts a ``status`` screen shows (``open_store`` + ``count_by_state`` + ``committed_cost``),
  imports excluded (the child's whole wall time is in the details).
- **resume start-up**: the database is first given a realistic mid-run shape (half the jobs
  done, C=50 queued at RunComfy, a few in ``downloading`` and ``submitting``); then, in a fresh
  child, the time from opening the store to the ``Runner`` being ready to submit: its resume
  queries (``count_by_state``, ``committed_cost``, the jobs in every resumable state, the done
  jobs to verify) and the first page of pending jobs. No request is sent.
- **store writes per job**: on that mid-run database, the wall time of the store calls one job
  makes from claim to done (claim, begin_submit, record_submission, mark_downloading,
  mark_done: five commits), averaged over 500 jobs. It must not grow with the campaign: before
  the in-flight count read only live rows, a claim alone cost 30 ms at 100k jobs.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import PYTHON, Result, run_measured, write_csv_manifest, write_matrix_manifest


def prepare_mid_run(db: Path, *, done_fraction: float = 0.5, in_flight: int = 50) -> None:
    """Move jobs of the planned campaign to a mid-run mix of states (straight SQL, no events)."""
    with sqlite3.connect(db) as c:
        total = c.execute("SELECT count(*) FROM jobs").fetchone()[0]
        done = int(total * done_fraction)
        c.execute(
            "UPDATE jobs SET state='done', attempts=1, request_id='req-' || id, output_path='/nonexistent/' || id,"
            " size=1, sha256='00', result_urls='[\"https://example.com/x.mp4\"]' WHERE id <= ?", (done,)
        )
        c.execute("UPDATE jobs SET state='queued', attempts=1, request_id='req-' || id WHERE id > ? AND id <= ?",
                  (done, done + in_flight))
        c.execute("UPDATE jobs SET state='downloading', attempts=1, request_id='req-' || id,"
                  " result_urls='[\"https://example.com/x.mp4\"]' WHERE id > ? AND id <= ?",
                  (done + in_flight, done + in_flight + 4))


def probe_status(db: str) -> dict[str, float]:
    from batchrun.store import open_store

    started = time.perf_counter()
    store = open_store(f"sqlite:///{db}")
    campaign = store.list_campaigns()[0]
    counts = store.count_by_state(campaign.id)
    store.committed_cost(campaign.id)
    elapsed = time.perf_counter() - started
    store.close()
    return {"seconds": elapsed, "jobs": sum(counts.values())}


def probe_resume(db: str) -> dict[str, float]:
    import anyio

    from batchrun.api import RunComfyClient
    from batchrun.download import Downloader
    from batchrun.pool import Runner, RunOptions
    from batchrun.store import open_store

    async def main() -> dict[str, float]:
        started = time.perf_counter()
        store = open_store(f"sqlite:///{db}")
        campaign = store.list_campaigns()[0]
        async with RunComfyClient("http://127.0.0.1:9", "t") as client, Downloader() as downloader:
            runner = Runner(store, campaign_id=campaign.id, campaign_name=campaign.name,
                            output_dir=Path(campaign.output_dir), client=client, downloader=downloader,
                            options=RunOptions(concurrency=50))
            async with anyio.create_task_group() as tg:
                runner._tg = tg
                await runner._resume()
                first = store.pending_jobs(campaign.id, limit=256)
                elapsed = time.perf_counter() - started
                tg.cancel_scope.cancel()  # no verification, no polling: start-up only
        store.close()
        return {"seconds": elapsed, "tracked": len(runner._tracked), "first_page": len(first)}

    return anyio.run(main)


def probe_bookkeeping(db: str, jobs: int = 500) -> dict[str, float]:
    """Wall time of the store's writes for one job's life, on the big mid-run database."""
    from batchrun.states import JobState
    from batchrun.store import open_store

    store = open_store(f"sqlite:///{db}")
    campaign = store.list_campaigns()[0]
    started = time.perf_counter()
    for index in range(jobs):
        (job,) = store.claim_pending(campaign.id, "bench", limit=1, cap=10_000, lease_seconds=60)
        store.begin_submit(job.id)
        store.record_submission(job.id, f"bench-{index}")
        store.mark_downloading(job.id, ["https://example.com/x.mp4"], from_state=JobState.QUEUED)
        store.mark_done(job.id, output_path=f"/nonexistent/bench-{index}.mp4", size=1, sha256="00",
                        downloaded=[{"url": "https://example.com/x.mp4"}])
    elapsed = time.perf_counter() - started
    store.close()
    return {"ms_per_job": elapsed / jobs * 1000, "jobs": jobs}


def _probe(kind: str, db: Path) -> dict[str, float]:
    usage = run_measured([PYTHON, "-m", "benchmarks.scale", kind, str(db)], cwd=Path(__file__).resolve().parent.parent)
    if usage.returncode != 0:
        raise RuntimeError(f"{kind} probe failed: {usage.stdout[-2000:]}")
    data = json.loads(usage.stdout.strip().splitlines()[-1])
    data["child_wall_s"] = round(usage.wall, 3)
    data["child_peak_rss_mb"] = round(usage.max_rss / 2**20, 1)
    return data


def run(quick: bool) -> list[Result]:
    jobs = 10_000 if quick else 100_000
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        folder = Path(tmp)
        manifest = write_matrix_manifest(folder, jobs)
        db = folder / "scale.db"
        plan = [PYTHON, "-m", "batchrun", "plan", str(manifest), "--db", str(db), "--json"]
        first = run_measured(plan, cwd=root)
        if first.returncode != 0:
            raise RuntimeError(f"batchrun plan failed: {first.stdout[-2000:]}")
        planned = json.loads(first.stdout)["counts"]["new"]
        again = run_measured(plan, cwd=root)
        details = {"jobs": planned, "cpu_s": round(first.cpu, 3), "replan_wall_s": round(again.wall, 3),
                   "replan_peak_rss_mb": round(again.max_rss / 2**20, 1)}
        results = [
            Result("d. plan+insert 100k jobs: time" if not quick else "d. plan+insert 10k jobs: time",
                   round(first.wall, 3), "s", 10.0, details=details),
            Result("d. plan+insert: peak RSS", round(first.max_rss / 2**20, 1), "MB", 300.0, details=details),
        ]
        rows = write_csv_manifest(folder, jobs)
        csv_plan = run_measured([PYTHON, "-m", "batchrun", "plan", str(rows), "--db", str(folder / "rows.db"),
                                 "--model", "kling/kling-3.0/standard/image-to-video", "--json"], cwd=root)
        if csv_plan.returncode != 0:
            raise RuntimeError(f"batchrun plan of the CSV failed: {csv_plan.stdout[-2000:]}")
        csv_details = {"jobs": json.loads(csv_plan.stdout)["counts"]["new"], "cpu_s": round(csv_plan.cpu, 3)}
        results += [
            Result(f"d. plan+insert {jobs // 1000}k-row CSV: time", round(csv_plan.wall, 3), "s", 10.0,
                   details=csv_details),
            Result("d. plan+insert CSV: peak RSS", round(csv_plan.max_rss / 2**20, 1), "MB", 300.0,
                   details=csv_details),
        ]
        status = _probe("probe-status", db)
        results.append(Result("d. status start-up", round(status["seconds"], 3), "s", 1.0, details=status))
        prepare_mid_run(db)
        resume = _probe("probe-resume", db)
        results.append(Result("d. resume start-up", round(resume["seconds"], 3), "s", 1.0, details=resume))
        books = _probe("probe-bookkeeping", db)
        results.append(Result("d. store writes per job (claim to done)", round(books["ms_per_job"], 3), "ms/job",
                              None, details=books))
    return results


if __name__ == "__main__":
    kind, db = sys.argv[1], sys.argv[2]
    probes = {"probe-status": probe_status, "probe-resume": probe_resume, "probe-bookkeeping": probe_bookkeeping}
    print(json.dumps(probes[kind](db)))
