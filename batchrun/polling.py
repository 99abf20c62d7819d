"""When to check a submitted job next, and with which request. Pure: every call takes ``now``.

Three pieces, meant to be driven by ONE scheduler loop rather than a sleeping task per job:

- ``PollSchedule``: a short first check after submit, then intervals growing geometrically
  (0.5 s, 0.75 s, 1.1 s ... capped at 10 s by default). ``cap`` is therefore also the longest a
  finished job waits to be noticed once it may be done.
- ``LatencyModel``: learns how long jobs take (submit -> finished) from finished jobs (keep one
  per model id). While a job is younger than ``estimate()`` (by default the 10th percentile of
  recent durations, i.e. "hardly any job finished before this"), the schedule skips the
  pointless early checks and jumps straight to that moment (but never waits more than
  ``max_idle`` between checks, so early failures are still seen, and never less than ``floor``).
- ``LatencyModel.check_ages(...)``: once enough jobs finished, the whole plan of check ages
  (seconds after submit) that minimises checks while keeping the expected lateness (time between
  a job finishing and a check seeing it) under ``lateness`` x the mean duration: a small dynamic
  program over the learned distribution (``plan_check_ages``), recomputed as samples come in. A
  fixed latency L gets ONE check just after L; a spread-out one gets checks where the mass is.
  ``PollSchedule.next_due(..., ages=...)`` follows it, never leaving more than ``cap`` between
  checks; past the last planned age it backs off (10% of the job's age, within floor..cap).
  When every learned duration is exact (RunComfy's own ``finished_at - created_at``), the plan
  is *patient*: before the earliest learned duration no job can be late yet, so the checks
  before it may be up to ``patient_wait`` (30 s) apart instead of ``cap`` (a job that fails
  early, or a run of shorter jobs, is still seen within it). A duration measured by noticing the job is
  only known to lie between two checks; learning from those, longer first waits would make the
  learned durations, and with them the waits, creep up, so such a plan keeps ``cap`` throughout.
- ``PollQueue``: a heap of (due time, job key) with lazy removal; ``pop_due(now)`` gives the
  keys whose check is due, ``next_due()`` how long the scheduler may sleep.

Which endpoint: ``endpoint_for(...)`` says ``"result"`` (one request answers both "is it done?"
and "where are the files?") unless the caller wants the queue position, which only ``/status``
reports.

A scheduler loop::

    queue.push(job.key, schedule.first_due(submitted_at=now, now=now))
    ...
    for key in queue.pop_due(clock()):
        report = await client.result(request_id)          # endpoint_for(...) == "result"
        if report is terminal: model.record(finished - submitted); handle it
        else:
            state = states[key] = states[key].checked(clock())
            queue.push(key, schedule.next_due(state, clock(), estimate=model.estimate()))
    await sleep_until(queue.next_due())                    # or until a new job is pushed
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, replace
from typing import Literal

Endpoint = Literal["result", "status"]

#: the shortest wait between two checks of a job, whatever ``floor`` says: never a busy loop
MIN_WAIT = 0.001


def endpoint_for(*, want_queue_position: bool = False) -> Endpoint:
    """The request to check a job with: ``/result`` unless the queue position is wanted."""
    return "status" if want_queue_position else "result"


@dataclass(frozen=True)
class PollState:
    """What the schedule needs to know about one job: when it was submitted, how often checked."""

    submitted_at: float  #: clock time the submit answered (or resume found the job at RunComfy)
    checks: int = 0  #: checks done so far that found it unfinished
    last_checked: float | None = None

    def checked(self, now: float) -> PollState:
        """The state after one more check that found the job still unfinished."""
        return replace(self, checks=self.checks + 1, last_checked=now)


@dataclass(frozen=True)
class PollSchedule:
    """Geometric backoff between checks, optionally skipping ahead to a learned completion time."""

    first: float = 0.5  #: first check this long after submit
    factor: float = 1.5  #: each interval is this much longer than the one before
    cap: float = 10.0  #: longest interval once a job may be done (= worst lateness noticing it)
    floor: float = 0.1  #: never check a job again sooner than this
    max_idle: float = 120.0  #: never go longer than this between checks, even when skipping ahead
    #: longest wait before the first check of a patient plan (see ``LatencyModel.exact``): bounds how
    #: late an early failure, or a job shorter than any learned one, is seen (never less than cap)
    patient_wait: float = 30.0
    #: learned plan (``LatencyModel.check_ages``): mean lateness allowed, as a fraction of the mean
    #: duration. Lower: jobs noticed sooner (shorter makespan), more checks per job.
    lateness: float = 0.03

    def __post_init__(self) -> None:
        if self.first <= 0 or self.factor < 1 or self.cap <= 0 or self.floor < 0:
            raise ValueError("poll intervals must be positive and the factor at least 1")
        if self.max_idle < self.cap:
            raise ValueError("max_idle must be at least cap")

    def interval(self, checks: int) -> float:
        """The plain backoff interval after ``checks`` unfinished checks (0: first after submit)."""
        if checks <= 0:
            return max(self.first, self.floor)
        # first * factor**checks, computed without overflowing for very old jobs
        limit = math.log(self.cap / self.first, self.factor) if self.factor > 1 else math.inf
        if checks >= limit:
            return max(self.cap, self.floor)
        return max(min(self.cap, self.first * self.factor**checks), self.floor)

    def first_due(
        self,
        *,
        submitted_at: float,
        now: float,
        estimate: float | None = None,
        ages: tuple[float, ...] | None = None,
        patient: bool = False,
    ) -> float:
        """When to check a just-submitted job the first time."""
        return self.next_due(PollState(submitted_at=submitted_at), now, estimate=estimate, ages=ages, patient=patient)

    def next_due(
        self,
        state: PollState,
        now: float,
        *,
        estimate: float | None = None,
        ages: tuple[float, ...] | None = None,
        patient: bool = False,
    ) -> float:
        """The clock time of the next check of a job in ``state``.

        ``ages`` (from ``LatencyModel.check_ages()``) is a learned plan of check ages: the next
        planned age after the job's current age, at most ``cap`` from now (past the plan: 10% of
        the job's age, within floor..cap); a ``patient`` plan (learned from exact durations)
        waits up to ``patient_wait`` at a time for its first planned age. Without a plan, ``estimate`` (from
        ``LatencyModel.estimate()``) is the job age before which it is unlikely to be finished;
        while the job is younger, the check moves to that age, bounded by ``max_idle`` from now.
        """
        if ages:
            age = now - state.submitted_at
            index = bisect.bisect_right(ages, age + 1e-6)
            if index < len(ages):
                due = state.submitted_at + ages[index]
            else:
                due = now + min(self.cap, max(self.floor, 0.1 * age))
            # before the first planned age no learned job was done yet: a patient plan waits for it
            longest = max(self.patient_wait, self.cap) if patient and index == 0 else self.cap
            return max(min(due, now + longest), now + max(self.floor, MIN_WAIT))
        due = now + self.interval(state.checks)
        if estimate is not None and estimate > 0:
            likely_done_at = state.submitted_at + estimate
            if likely_done_at > due:
                due = min(likely_done_at, now + self.max_idle)
        return max(due, now + max(self.floor, MIN_WAIT))


class LatencyModel:
    """A running quantile of how long recent jobs took from submit to finished (one per model)."""

    def __init__(self, *, quantile: float = 0.1, window: int = 200, min_samples: int = 5) -> None:
        if not 0 <= quantile <= 1:
            raise ValueError("quantile must be between 0 and 1")
        if window < 1 or min_samples < 1:
            raise ValueError("window and min_samples must be positive")
        self.quantile = quantile
        self.min_samples = min_samples
        self._recent: deque[float] = deque(maxlen=window)
        self._exact: deque[bool] = deque(maxlen=window)  # was each of _recent reported by RunComfy?
        self._inexact = 0  # how many of _recent were not
        self._added = 0  # samples recorded so far (the deque forgets, this does not)
        self._plan: tuple[float, ...] | None = None
        self._plan_key: tuple[float, float, float, bool] | None = None
        self._plan_at = 0  # ``_added`` when the plan was computed
        self._plan_low = 0.0  # the shortest duration the plan was computed from

    @property
    def samples(self) -> int:
        return len(self._recent)

    @property
    def exact(self) -> bool:
        """True when every recent duration came from RunComfy's timestamps (none was a guess)."""
        return bool(self._recent) and self._inexact == 0

    def record(self, duration: float, *, exact: bool = False) -> None:
        """Learn from one finished job; durations that are not finite or negative are ignored.

        ``exact``: the duration is RunComfy's own (its timestamps), not inferred from when the
        job was noticed; only a window of exact durations makes the plan patient.
        """
        if math.isfinite(duration) and duration >= 0:
            if len(self._exact) == self._exact.maxlen and not self._exact[0]:
                self._inexact -= 1  # the oldest sample, about to be forgotten, was a guess
            self._recent.append(float(duration))
            self._exact.append(exact)
            self._inexact += not exact
            self._added += 1
            if self._plan is not None and duration < self._plan_low:
                self._plan = None  # shorter than any the plan knew: its first checks may come too late

    def check_ages(self, *, lateness: float, cap: float, floor: float) -> tuple[float, ...] | None:
        """The learned plan of check ages (see ``plan_check_ages``), None until ``min_samples``.

        Cached: recomputed when the settings change or a quarter of the window (at least 8
        samples) is new, so its cost is spread thinly over many jobs.
        """
        n = len(self._recent)
        if n < self.min_samples:
            return None
        key = (lateness, cap, floor, self.exact)
        fresh = self._added - self._plan_at
        if self._plan is None or key != self._plan_key or fresh >= max(8, n // 4):
            self._plan = plan_check_ages(self._recent, lateness=lateness, cap=cap, floor=floor, patient=self.exact)
            self._plan_key, self._plan_at, self._plan_low = key, self._added, min(self._recent)
        return self._plan

    def record_job(self, *, submitted_at: float, finished_at: float) -> None:
        """Learn from one job that was submitted and seen finished at these clock times."""
        self.record(finished_at - submitted_at)

    def estimate(self) -> float | None:
        """The configured quantile of recent durations, or None until ``min_samples`` were seen."""
        if len(self._recent) < self.min_samples:
            return None
        ordered = sorted(self._recent)
        position = self.quantile * (len(ordered) - 1)
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


#: resolution of the check plan: a candidate check every 1/this of the learned jobs or of their
#: range of durations, whichever comes first
PLAN_POINTS = 64


def plan_check_ages(
    durations: Iterable[float],
    *,
    lateness: float,
    cap: float,
    floor: float = 0.0,
    points: int = PLAN_POINTS,
    patient: bool = False,
) -> tuple[float, ...]:
    """Check ages that find jobs of this duration distribution with the fewest expected checks
    while the mean lateness stays within ``lateness`` x the mean duration.

    The learned durations x_1 <= ... <= x_n are read as a piecewise-uniform density: the n-1
    gaps between neighbours are equally likely, a job in gap k finishing on average at its
    midpoint m_k. (Treating each sample as a point where jobs finish exactly would be
    optimistic: a check placed on a sample would seem to see "its" jobs with no lateness at all,
    and the real lateness came out about twice the budget.) Candidate checks are a sample every
    ``1/points`` of the jobs and a point every ``1/points`` of the range of durations (so a
    sparse tail, or the gap before one slow outlier, has candidates too), at least ``floor``
    apart and at most ``cap``; a check at c sees every job of a gap ending at or before c and
    the share of the gap it falls in that lies before it. For a
    price ``lam`` per check, V(i) = min over j of lam*(unfinished at c_i) + sum over the gaps in
    (c_i, c_j] of (c_j - m_k) + V(j), with c_j - c_i <= ``cap`` (the plan never leaves a
    finished job unseen longer, the first check included, and the program knows those checks'
    price); ``lam`` is bisected to the largest value meeting the lateness budget. A ``patient``
    plan (exact durations) counts the cap only from the earliest learned duration x_1 on:
    c_j - max(c_i, x_1) <= ``cap``, so no check is spent while no job can be done. 4-60 ms
    in CPython for 200 samples on a slow core (more candidates for spread-out durations).
    """
    xs = sorted(d for d in durations if math.isfinite(d) and d >= 0)  # an inf would never end the plan
    if not xs:
        return ()
    if xs[-1] == xs[0]:
        return (xs[-1],)  # a fixed latency: one check, right at it
    gaps = len(xs) - 1
    prefix = [0.0]  # prefix sums of the gap midpoints
    for k in range(gaps):
        prefix.append(prefix[-1] + (xs[k] + xs[k + 1]) / 2)
    mean = prefix[-1] / gaps
    budget = max(lateness, 0.0) * mean * gaps  # total lateness allowed over all the gaps
    # candidates: a sample every 1/points of the jobs (resolution where jobs are dense) and a point
    # every 1/points of the range (resolution in sparse tails and across the gap before a slow
    # outlier, whose early part a check inside it sees), never closer than floor
    points = max(points, 1)
    mass_step = max(1, len(xs) // points)
    time_step = (xs[-1] - xs[0]) / points
    grid = [xs[index] for index in range(mass_step - 1, len(xs), mass_step)]
    grid += [xs[0] + step * time_step for step in range(points + 1)]
    candidates: list[float] = []
    for age in sorted(grid):
        if age > xs[-1]:
            break
        if not candidates or (age > candidates[-1] and age - candidates[-1] >= floor):
            candidates.append(age)
    if candidates[-1] != xs[-1]:  # the last check sees every learned duration
        if len(candidates) > 1 and xs[-1] - candidates[-1] < floor:
            candidates[-1] = xs[-1]
        else:
            candidates.append(xs[-1])
    # index 0: the submit; then the candidates, with one every cap across longer stretches (a
    # patient plan needs none before the earliest learned duration: nothing can be late there)
    ages_at = [0.0, candidates[0]] if patient else [0.0]
    for candidate in candidates[len(ages_at) - 1:]:
        while candidate - ages_at[-1] > cap:
            ages_at.append(ages_at[-1] + cap)
        ages_at.append(candidate)
    m = len(ages_at) - 1

    def finished_by(age: float) -> tuple[float, float]:
        """(mass, first moment) of the jobs finished at ``age``: the whole gaps ending at or before
        it (ties included) and the part of the gap it falls in (a check inside a wide gap, such as
        one before a slow outlier, sees the jobs that finish early in it)."""
        seen = bisect.bisect_right(xs, age)  # samples <= age
        if seen == 0:
            return 0.0, 0.0
        whole = seen - 1
        if seen == len(xs):
            return float(whole), prefix[whole]
        part = (age - xs[whole]) / (xs[seen] - xs[whole])
        return whole + part, prefix[whole] + part * (xs[whole] + age) / 2

    done_by, moment_by = zip(*(finished_by(age) for age in ages_at), strict=True)

    start = xs[0] if patient else 0.0  # from when on the cap holds

    def solve(lam: float) -> tuple[float, list[int]]:
        value = [0.0] * (m + 1)
        choice = [m] * (m + 1)
        late = [0.0] * (m + 1)
        for i in range(m - 1, -1, -1):
            best, best_j, best_late = math.inf, m, 0.0
            finished, moment = done_by[i], moment_by[i]
            base = lam * (gaps - finished)
            for j in range(i + 1, m + 1):
                if j > i + 1 and ages_at[j] - max(ages_at[i], start) > cap:
                    break  # the plan never leaves a job that may be done unseen for more than cap
                lost = (done_by[j] - finished) * ages_at[j] - (moment_by[j] - moment)
                cost = base + lost + value[j]
                if cost < best:
                    best, best_j, best_late = cost, j, lost + late[j]
            value[i], choice[i], late[i] = best, best_j, best_late
        plan, i = [], 0
        while i < m:
            i = choice[i]
            plan.append(i)
        return late[0], plan

    low, high = 0.0, max(mean, 1e-9) * gaps  # lam = 0: a check at every candidate (least lateness)
    _, best_plan = solve(low)
    for _ in range(20):
        middle = (low + high) / 2
        lost, plan = solve(middle)
        if lost <= budget:
            low, best_plan = middle, plan
        else:
            high = middle
    # strictly increasing, and never more than cap apart once a job may be done: the program only
    # steps that far
    return tuple(ages_at[index] for index in best_plan)


class PollQueue:
    """A heap of (due time, key): one sleeping scheduler instead of one sleeping task per job.

    Pushing a key again replaces its earlier entry (the stale one is skipped when it surfaces).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._live: dict[Hashable, int] = {}  # key -> sequence number of its current entry
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._live

    def push(self, key: Hashable, due: float) -> None:
        """Schedule (or reschedule) ``key`` for ``due``."""
        sequence = next(self._sequence)
        self._live[key] = sequence
        heapq.heappush(self._heap, (due, sequence, key))

    def remove(self, key: Hashable) -> None:
        """Forget ``key`` (e.g. cancelled); a no-op when it is not scheduled."""
        self._live.pop(key, None)

    def _drop_stale(self) -> None:
        while self._heap and self._live.get(self._heap[0][2]) != self._heap[0][1]:
            heapq.heappop(self._heap)

    def next_due(self) -> float | None:
        """The earliest due time, or None when nothing is scheduled."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float, limit: int | None = None) -> list[Hashable]:
        """The keys due at or before ``now``, earliest first (at most ``limit``); they are removed."""
        due: list[Hashable] = []
        while limit is None or len(due) < limit:
            self._drop_stale()
            if not self._heap or self._heap[0][0] > now:
                break
            _, _, key = heapq.heappop(self._heap)
            del self._live[key]
            due.append(key)
        return due

    def keys(self) -> Iterable[Hashable]:
        return list(self._live)
