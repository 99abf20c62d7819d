"""What the report shows, as plain JSON-ready dicts.

``gather`` is the only function here that reads (the store, through its named queries);
``summarize``, ``throughput`` and ``failure_groups`` are pure so totals are tested on plain lists.
Times are ISO 8601 strings in UTC; paths to videos are relative to the report file (POSIX,
URL-quoted) so the output folder can be moved or zipped with its report.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from batchrun.planning import video_seconds
from batchrun.states import IN_FLIGHT, JobState
from batchrun.store import CampaignRecord, Store, utcnow

#: states whose estimated cost is spent or being spent (RunComfy has, or may have, the job)
SPENDING = frozenset(state.value for state in (*IN_FLIGHT, JobState.DOWNLOADING, JobState.DONE))
#: bucket widths the throughput chart may use, in seconds; the smallest giving <= MAX_BUCKETS wins
#: (sub-second ones only matter for demos and tests, where a whole campaign takes seconds)
BUCKET_SIZES = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
MAX_BUCKETS = 48


def gather(
    store: Store,
    campaign: CampaignRecord,
    report_path: Path,
    *,
    now: Callable[[], datetime] = utcnow,
) -> dict[str, Any]:
    """Everything the report shows about ``campaign``, for a report written at ``report_path``."""
    every = store.jobs_in_states(campaign.id, JobState, include_superseded=True)
    active = {job.id for job in store.jobs_in_states(campaign.id, JobState, include_superseded=False)}
    report_dir = Path(report_path).absolute().parent
    jobs = [_job(job, job.id not in active, report_dir) for job in every]
    return {
        "campaign": {
            "name": campaign.name,
            "manifest": campaign.manifest_path,
            "output_dir": campaign.output_dir,
            "created_at": _iso(campaign.created_at),
            "budget": (campaign.settings or {}).get("budget"),
        },
        "generated_at": _iso(now()),
        "totals": summarize(jobs, committed_usd=store.committed_cost(campaign.id)),
        "failures": failure_groups(jobs),
        "throughput": throughput(jobs),
        "jobs": jobs,
    }


def _job(job: Any, superseded: bool, report_dir: Path) -> dict[str, Any]:
    prompt = job.input.get("prompt")
    if not isinstance(prompt, str):  # text-to-video with multi_prompt: show the segments' prompts
        segments = job.input.get("multi_prompt") or []
        prompt = " / ".join(str(s.get("prompt", "")) for s in segments if isinstance(s, Mapping))
    return {
        "id": job.id,
        "key": job.key,
        "revision": job.revision,
        "superseded": superseded,
        "model": job.model,
        "state": str(job.state),
        "prompt": prompt,
        "input": dict(job.input),
        "seconds": video_seconds(job),
        "estimated_cost": job.estimated_cost,
        "attempts": job.attempts,
        "request_id": job.request_id,
        "error": job.error,
        "output_path": job.output_path,
        "src": video_src(job.output_path, report_dir) if job.state is JobState.DONE else None,
        "size": job.size,
        "sha256": job.sha256,
        "submitted_at": _iso(job.submitted_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }


def video_src(output_path: str | None, report_dir: Path) -> str | None:
    """``output_path`` as a URL relative to ``report_dir`` (None when there is no file)."""
    if not output_path:
        return None
    relative = Path(os.path.relpath(Path(output_path).absolute(), report_dir)).as_posix()
    return quote(relative, safe="/")


def summarize(jobs: Sequence[Mapping[str, Any]], *, committed_usd: float) -> dict[str, Any]:
    """Counts, seconds of video, spend and wall time of the (current revisions of the) jobs."""
    current = [job for job in jobs if not job["superseded"]]
    states = Counter(job["state"] for job in current)
    done = [job for job in current if job["state"] == JobState.DONE.value]
    submitted = [_at(job["submitted_at"]) for job in jobs if job["submitted_at"]]
    finished = [_at(job["finished_at"]) for job in jobs if job["finished_at"] and job["submitted_at"]]
    wall = (max(finished) - min(submitted)).total_seconds() if submitted and finished else None
    return {
        "jobs": len(current),
        "states": {state.value: states.get(state.value, 0) for state in JobState},
        "done": len(done),
        "video_seconds": sum(job["seconds"] or 0 for job in done),
        "planned_seconds": sum(job["seconds"] or 0 for job in current),
        # every revision RunComfy has or may have, superseded ones included: they were paid for
        "spent_usd": round(sum(job["estimated_cost"] or 0.0 for job in jobs if job["state"] in SPENDING), 6),
        "committed_usd": round(committed_usd, 6),
        "planned_usd": round(sum(job["estimated_cost"] or 0.0 for job in current), 6),
        "first_submitted_at": min(submitted).isoformat() if submitted else None,
        "last_finished_at": max(finished).isoformat() if finished else None,
        "wall_seconds": wall,
        "models": per_model(current),
    }


def per_model(jobs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Jobs, done jobs, seconds of done video and estimated USD of each model, by model id."""
    models: dict[str, dict[str, Any]] = {}
    for job in jobs:
        row = models.setdefault(job["model"], {"model": job["model"], "jobs": 0, "done": 0, "video_seconds": 0,
                                               "planned_usd": 0.0})
        row["jobs"] += 1
        row["planned_usd"] = round(row["planned_usd"] + (job["estimated_cost"] or 0.0), 6)
        if job["state"] == JobState.DONE.value:
            row["done"] += 1
            row["video_seconds"] += job["seconds"] or 0
    return [models[name] for name in sorted(models)]


def failure_groups(jobs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Failed current jobs grouped by their error, most frequent first."""
    groups: dict[str, list[str]] = {}
    for job in jobs:
        if job["state"] == JobState.FAILED.value and not job["superseded"]:
            reason = " ".join(str(job["error"] or "unknown error").split())
            groups.setdefault(reason, []).append(job["key"])
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [{"reason": reason, "count": len(keys), "keys": keys} for reason, keys in ordered]


def throughput(jobs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Done jobs per time bucket from the first submission, with the running total."""
    jobs = list(jobs)
    starts = [_at(job["submitted_at"]) for job in jobs if job["submitted_at"]]
    ends = sorted(_at(job["finished_at"]) for job in jobs if job["state"] == JobState.DONE.value and job["finished_at"])
    if not starts or not ends:
        return {"start": None, "bucket_seconds": None, "buckets": []}
    start = min(min(starts), ends[0])
    span = max((ends[-1] - start).total_seconds(), 0.1)
    size = next((s for s in BUCKET_SIZES if span / s <= MAX_BUCKETS), BUCKET_SIZES[-1])
    count = int(span // size) + 1
    done = [0] * count
    for end in ends:
        done[min(int((end - start).total_seconds() // size), count - 1)] += 1
    buckets, total = [], 0
    for index, n in enumerate(done):
        total += n
        buckets.append({"offset_seconds": round(index * size, 3), "done": n, "cumulative": total})
    return {"start": start.isoformat(), "bucket_seconds": size, "buckets": buckets}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)
