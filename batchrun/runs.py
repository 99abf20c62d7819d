"""What a run is given and what it gives back: options, the summary, the submit policy, progress.

Plain values (no I/O): the CLI builds ``RunOptions`` and renders ``RunSummary``; the pool
(``batchrun.pool``) reads the one and fills the other.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from batchrun.states import JobState


def new_runner_id() -> str:
    """``host:pid:random``: unique per run, readable in the database and in takeover events."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class UnknownSubmitPolicy(StrEnum):
    """What to do with a job whose submission may or may not have reached RunComfy."""

    HOLD = "hold"  #: leave it in ``submitting`` and report it; nothing is resubmitted (default)
    RESUBMIT = "resubmit"  #: submit it again: may pay twice if the lost POST had created a job
    FAIL = "fail"  #: give up on it: mark it failed


class Progress(Protocol):
    """Whatever shows the run to a person; the pool reports to it and never prints itself."""

    def started(self, total: int, counts: dict[JobState, int]) -> None: ...
    def moved(self, key: str, old: JobState | None, new: JobState, note: str | None = None) -> None: ...
    def message(self, text: str) -> None: ...


class SilentProgress:
    def started(self, total: int, counts: dict[JobState, int]) -> None:
        pass

    def moved(self, key: str, old: JobState | None, new: JobState, note: str | None = None) -> None:
        pass

    def message(self, text: str) -> None:
        pass


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 10  #: jobs submitted and unfinished at RunComfy at once
    downloads: int = 4  #: simultaneous downloads
    unknown_submit: UnknownSubmitPolicy = UnknownSubmitPolicy.HOLD
    verify_done: bool = True  #: re-hash done jobs' files and fetch again those missing or corrupt
    max_resubmits: int = 3  #: per job and run, under ``--on-unknown-submit=resubmit``
    budget: float | None = None  #: USD; estimated cost of all submissions never exceeds it
    #: POSTs in flight at once. Each one whose answer a crash loses is a job in doubt (see the
    #: `submitting` policy), so this bounds what a kill -9 can leave unknown; submits are fast
    #: next to generation times, so a few lanes keep the in-flight cap full.
    submit_parallelism: int = 4
    #: seconds after which a download that outlived its retries is tried again in the same run
    download_retry_delays: tuple[float, ...] = (60.0, 300.0, 900.0)
    #: a result file missing (404/410) within this many seconds of the job finishing is a file
    #: host that has not caught up: tried again later (as above), not a failed, paid-for job
    missing_file_grace: float = 3600.0
    runner_id: str = field(default_factory=lambda: new_runner_id())  #: who holds this run's leases
    lease_seconds: float = 60.0  #: a runner silent this long is presumed dead; others take its jobs
    #: this runner's own cap; ``concurrency`` is then the campaign-wide cap of all runners together
    local_concurrency: int | None = None
    #: the only runner on the database (it holds the SQLite run lock): take every job over at
    #: start without waiting for the leases of a crashed predecessor, and never wait for others
    alone: bool = True
    #: how late a finished job may be noticed, as a fraction of the learned mean duration: lower
    #: finishes campaigns sooner with more status requests, higher spends fewer requests
    poll_lateness: float = 0.03
    #: seconds a refused token lets the POSTs already under way finish (the API client's own
    #: timeout is 30 s): each then gets its real answer, recorded, instead of being left in doubt
    auth_stop_grace: float = 35.0
    #: seconds of failed checks in a row (5xx, no connection, odd answers) after which a job is
    #: left, as it is, for the next run: one job whose status RunComfy cannot give never keeps
    #: an unattended run from ending
    poll_give_up_seconds: float = 3600.0
    #: after a 429 taken as RunComfy's concurrency limit, seconds before one more slot is tried
    throttle_hold_seconds: float = 60.0

    @property
    def heartbeat_seconds(self) -> float:
        return max(0.05, self.lease_seconds / 3)


@dataclass
class RunSummary:
    """What a run did, for the final screen and the exit code."""

    campaign: str
    output_dir: Path
    counts: dict[JobState, int] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (key, error)
    held: list[str] = field(default_factory=list)  # keys left in `submitting`
    stop_reason: str | None = None
    interrupted: bool = False
    auth_failed: bool = False
    wall_seconds: float = 0.0
    submitted: int = 0
    downloaded: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        if self.auth_failed:
            return 2
        if self.interrupted:
            return 130
        return 0 if self.counts.get(JobState.DONE, 0) == self.total else 1
