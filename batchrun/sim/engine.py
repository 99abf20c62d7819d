"""Job bookkeeping of the simulated service, with an injectable clock and no I/O.

States are computed lazily: every call first replays, in time order, the starts and finishes
that happened since the last call (``_advance``). No timers or tasks exist per job, so thousands
of idle jobs cost nothing, and tests can drive the engine with virtual time.

Life of a job: created -> ``in_queue`` until ``queue_delay`` has passed and one of ``capacity``
slots is free (strict FIFO) -> ``in_progress`` for a latency sample -> ``completed`` or
``failed``. Only a queued job can be cancelled.
"""

from __future__ import annotations

import dataclasses

import bisect
import heapq
import math
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from batchrun import protocol

from .config import PRICE_PER_JOB_USD, Latency, SimConfig

FAILURE_MESSAGES = (
    "generation failed: the model returned no frames (simulated)",
    "generation failed: content moderation rejected the prompt (simulated)",
    "generation failed: worker ran out of GPU memory (simulated)",
)


@dataclass(eq=False, slots=True)
class Job:
    """One simulated generation; mutated only by the engine under its lock."""

    request_id: str
    model_id: str
    created_at: float  # engine clock
    eligible_at: float  # created_at + queue_delay
    latency: float  # seconds in progress (inf: manual)
    fails: bool
    status: str = protocol.IN_QUEUE
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    billed: float = 0.0
    qseq: int = 0  # place in the FIFO (queue positions are computed from it in O(log n))


@dataclass(frozen=True)
class SimStats:
    """A consistent snapshot of what the simulated service saw and did."""

    requests: Mapping[str, int]  # per endpoint kind
    faults_injected: Mapping[str, int]  # per fault kind
    jobs_created: int
    submissions_by_input: Mapping[str, int]  # sha256(canonical {"model","input"}) -> jobs created
    max_unfinished: int  # peak of jobs created and not yet terminal
    unfinished_now: int
    cancelled: int
    completed: int
    failed: int
    authorization_headers_on_files: int  # must stay 0 for a well-behaved client
    range_requests: int
    balance: float | None = None  # USD left (None: unlimited)

    def duplicates(self) -> int:
        """Jobs created beyond the first for an identical (model, input)."""
        return sum(n - 1 for n in self.submissions_by_input.values() if n > 1)


REQUEST_KINDS = ("submit", "status", "result", "cancel", "model_info", "file", "other")
FAULT_KINDS = ("server_error", "rate_limit", "reset", "lost_submit", "truncated_download", "error_200")


class InsufficientBalance(Exception):
    """The account cannot pay for another job."""


class TooManyInFlight(Exception):
    """The account has ``in_flight_limit`` unfinished jobs already."""


def sample_latency(latency: Latency, rng: random.Random) -> float:
    if latency.kind == "manual":
        return math.inf
    if latency.kind == "uniform":
        return rng.uniform(latency.value, latency.high)
    if latency.kind == "lognormal":
        return latency.value * math.exp(rng.gauss(0.0, latency.sigma))
    return latency.value


class Engine:
    """The simulated service's jobs and counters. Thread-safe: one lock around everything."""

    def __init__(
        self,
        config: SimConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._wall_offset = wall_clock() - clock()
        self.rng = rng if rng is not None else random.Random(config.seed)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # notified on every request and job created
        self.balance = config.balance
        self.jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()  # FIFO of in_queue jobs
        self._qseq = 0
        self._holes: list[int] = []  # sorted qseqs of jobs that left the queue from the middle
        self._running: list[tuple[float, int, Job]] = []  # heap by finish time (lazy deletion)
        self._running_count = 0
        self._seq = 0
        self._now = clock()  # time of the last replayed event
        self.requests = dict.fromkeys(REQUEST_KINDS, 0)
        self.faults = dict.fromkeys(FAULT_KINDS, 0)
        self.submissions_by_input: dict[str, int] = {}
        self.counts = {protocol.COMPLETED: 0, protocol.FAILED: 0, protocol.CANCELLED: 0}
        self.max_unfinished = 0
        self.authorization_headers_on_files = 0
        self.range_requests = 0
        self.file_digests: dict[str, str] = {}  # url -> sha256, for files served at least once

    # -- time ------------------------------------------------------------------------------
    def now(self) -> float:
        return self._clock()

    def wall(self, t: float) -> float:
        """Engine clock reading -> Unix time."""
        return t + self._wall_offset

    def _advance(self, now: float) -> None:
        """Replay every start and finish due by ``now``, in time order."""
        capacity = self.config.capacity
        while True:
            heap = self._running
            while heap and heap[0][2].status != protocol.IN_PROGRESS:
                heapq.heappop(heap)  # stale entry: finished early by finish()
            next_finish = heap[0][0] if heap else math.inf
            next_start = math.inf
            if self._queue and self._running_count < capacity:
                next_start = max(self._queue[0].eligible_at, self._now)
            if next_finish <= next_start and next_finish <= now:
                _, _, job = heapq.heappop(heap)
                self._now = max(self._now, next_finish)
                self._terminate(job, next_finish, failed=job.fails)
            elif next_start <= now:
                self._now = next_start
                self._start(self._queue.popleft(), next_start)
            else:
                self._now = max(self._now, now)
                return

    def _start(self, job: Job, t: float) -> None:
        job.status = protocol.IN_PROGRESS
        job.started_at = t
        self._running_count += 1
        if job.latency != math.inf:
            self._seq += 1
            heapq.heappush(self._running, (t + job.latency, self._seq, job))

    def _terminate(self, job: Job, t: float, *, failed: bool) -> None:
        if job.status == protocol.IN_PROGRESS:
            self._running_count -= 1
        job.finished_at = t
        if failed:
            job.status = protocol.FAILED
            job.error = job.error or FAILURE_MESSAGES[0]
        else:
            job.status = protocol.COMPLETED
        self.counts[job.status] += 1

    # -- operations --------------------------------------------------------------------------
    def count_request(self, kind: str) -> None:
        with self.lock:
            self.requests[kind] += 1
            self.changed.notify_all()

    def count_fault(self, kind: str) -> None:
        with self.lock:
            self.faults[kind] += 1

    def submit(self, model_id: str, input_digest: str) -> Job:
        """Create a job (raises InsufficientBalance when the account cannot pay for it,
        TooManyInFlight when it has ``in_flight_limit`` unfinished jobs)."""
        with self.lock:
            now = self.now()
            self._advance(now)
            limit = self.config.in_flight_limit
            if limit is not None and self._unfinished() >= limit:
                raise TooManyInFlight()
            if self.balance is not None:
                if self.balance < PRICE_PER_JOB_USD - 1e-9:
                    raise InsufficientBalance()
                self.balance -= PRICE_PER_JOB_USD
            config = self.config
            job = Job(
                request_id=str(uuid.uuid4()),  # never seeded: ids must not repeat across instances
                model_id=model_id,
                created_at=now,
                eligible_at=now + config.queue_delay,
                latency=sample_latency(config.latency, self.rng),
                fails=self.rng.random() < config.failure_rate,
                billed=PRICE_PER_JOB_USD if self.balance is not None else 0.0,
            )
            if job.fails:
                job.error = self.rng.choice(FAILURE_MESSAGES)
            self._qseq += 1
            job.qseq = self._qseq
            self.jobs[job.request_id] = job
            self._queue.append(job)
            self.submissions_by_input[input_digest] = self.submissions_by_input.get(input_digest, 0) + 1
            self.max_unfinished = max(self.max_unfinished, self._unfinished())
            self._advance(now)  # may start at once
            self.changed.notify_all()
            return job

    def get(self, request_id: str) -> tuple[Job, int | None] | None:
        """The job (state brought up to date) and its 1-based queue position while queued."""
        with self.lock:
            job = self.jobs.get(request_id)
            if job is None:
                return None
            self._advance(self.now())
            return job, self._position(job) if job.status == protocol.IN_QUEUE else None

    def _position(self, job: Job) -> int:
        """1-based FIFO position of a queued job, skipping jobs that left from the middle."""
        head = self._queue[0].qseq
        holes = self._holes
        if holes and holes[0] < head:  # forget holes the head has passed
            del holes[: bisect.bisect_left(holes, head)]
        return job.qseq - head + 1 - bisect.bisect_left(holes, job.qseq)

    def _leave_queue(self, job: Job) -> None:
        """Take a job out of the middle of the queue (cancel, or finish() before it started)."""
        if self._queue[0] is job:
            self._queue.popleft()
        else:
            self._queue.remove(job)
            bisect.insort(self._holes, job.qseq)

    def cancel(self, request_id: str) -> tuple[Job, bool] | None:
        """Cancel a queued job; (job, whether it was cancelled now), or None when unknown."""
        with self.lock:
            job = self.jobs.get(request_id)
            if job is None:
                return None
            now = self.now()
            self._advance(now)
            if job.status != protocol.IN_QUEUE:
                return job, False
            self._leave_queue(job)
            job.status = protocol.CANCELLED
            job.finished_at = now
            self.counts[protocol.CANCELLED] += 1
            if self.balance is not None and job.billed:
                self.balance += job.billed  # a job that never ran is not billed
                job.billed = 0.0
            self._advance(now)
            return job, True

    def finish(self, request_id: str | None = None, *, fail: bool = False) -> None:
        """Complete (or fail) one job now, or every running job when ``request_id`` is None."""
        with self.lock:
            now = self.now()
            self._advance(now)
            if request_id is None:
                targets = [j for j in self.jobs.values() if j.status == protocol.IN_PROGRESS]
            else:
                job = self.jobs.get(request_id)
                if job is None:
                    raise KeyError(f"no such simulated job: {request_id}")
                targets = [job]
            for job in targets:
                if job.status == protocol.IN_QUEUE:  # finishing a queued job skips the queue
                    self._leave_queue(job)
                    job.started_at = now
                elif job.status != protocol.IN_PROGRESS:
                    continue  # already terminal
                self._terminate(job, now, failed=fail)
            self._now = max(self._now, now)
            self._advance(now)

    def wait_for_jobs(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` jobs were created (False on timeout)."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.jobs) >= count, timeout=timeout)

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` requests of any kind were answered (False on timeout)."""
        with self.changed:
            return self.changed.wait_for(lambda: sum(self.requests.values()) >= count, timeout=timeout)

    def reconfigure(self, **changes: Any) -> None:
        """Change SimConfig fields (latency, failure_rate, ...) for jobs created from now on."""
        with self.lock:
            self.config = dataclasses.replace(self.config, **changes)

    def set_balance(self, usd: float | None) -> None:
        with self.lock:
            self.balance = usd

    def _unfinished(self) -> int:
        return len(self.jobs) - sum(self.counts.values())

    def stats(self) -> SimStats:
        with self.lock:
            self._advance(self.now())
            return SimStats(
                requests=dict(self.requests),
                faults_injected=dict(self.faults),
                jobs_created=len(self.jobs),
                submissions_by_input=dict(self.submissions_by_input),
                max_unfinished=self.max_unfinished,
                unfinished_now=self._unfinished(),
                cancelled=self.counts[protocol.CANCELLED],
                completed=self.counts[protocol.COMPLETED],
                failed=self.counts[protocol.FAILED],
                authorization_headers_on_files=self.authorization_headers_on_files,
                range_requests=self.range_requests,
                balance=self.balance,
            )
