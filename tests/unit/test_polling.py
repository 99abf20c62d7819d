"""The polling schedule, the latency model and the poll heap, in virtual time."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchrun.polling import LatencyModel, PollQueue, PollSchedule, PollState, endpoint_for


def test_first_check_is_soon_then_backs_off_geometrically_to_the_cap() -> None:
    """A quick job is noticed within half a second; a slow one costs at most one request per 10 s."""
    schedule = PollSchedule(first=0.5, factor=1.5, cap=10.0, floor=0.1)
    intervals = [schedule.interval(n) for n in range(12)]
    assert intervals[:4] == pytest.approx([0.5, 0.75, 1.125, 1.6875])
    assert all(b >= a for a, b in zip(intervals, intervals[1:], strict=False))
    assert intervals[-1] == 10.0
    assert schedule.interval(10_000) == 10.0


def test_virtual_timeline_without_a_model() -> None:
    """Simulated checks of one job follow first + backoff, never exceeding the cap."""
    schedule = PollSchedule()
    now = 100.0
    state = PollState(submitted_at=now)
    times = []
    due = schedule.first_due(submitted_at=now, now=now)
    for _ in range(15):
        times.append(due)
        state = state.checked(due)
        due = schedule.next_due(state, due)
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert times[0] == 100.5
    assert max(gaps) == 10.0
    assert state.checks == 15 and state.last_checked == times[-1]


def test_model_skips_pointless_early_checks() -> None:
    """Once jobs are known to take ~60 s, a new job is not polled until about then."""
    model = LatencyModel(quantile=0.1, min_samples=5)
    for duration in [60, 62, 65, 70, 90, 120]:
        model.record(duration)
    estimate = model.estimate()
    assert estimate is not None and 60 <= estimate <= 65
    schedule = PollSchedule()
    due = schedule.first_due(submitted_at=0.0, now=0.0, estimate=estimate)
    assert due == pytest.approx(estimate)
    # after that point it backs off as usual, so lateness stays within the cap
    state = PollState(submitted_at=0.0, checks=1, last_checked=due)
    assert schedule.next_due(state, due, estimate=estimate) - due <= schedule.cap


def test_skip_ahead_is_bounded_by_max_idle() -> None:
    """Even for very slow models a job is checked every max_idle seconds (early failures show up)."""
    schedule = PollSchedule(max_idle=60)
    assert schedule.first_due(submitted_at=0.0, now=0.0, estimate=3600) == 60


def test_floor_is_respected_even_when_overdue() -> None:
    """An overdue job is not re-polled in a tight loop."""
    schedule = PollSchedule(first=0.5, floor=1.0)
    state = PollState(submitted_at=0.0, checks=0)
    assert schedule.next_due(state, 500.0, estimate=10.0) == 501.0


def test_model_needs_enough_samples_and_ignores_garbage() -> None:
    """Until a few jobs finished, the schedule runs without estimates."""
    model = LatencyModel(min_samples=3)
    model.record(float("nan"))
    model.record(-1)
    model.record(5)
    model.record_job(submitted_at=10, finished_at=17)
    assert model.samples == 2 and model.estimate() is None
    model.record(9)
    assert model.estimate() is not None


def test_model_follows_recent_jobs_only() -> None:
    """The estimate adapts when the service speeds up (bounded window)."""
    model = LatencyModel(quantile=0.5, window=10, min_samples=1)
    for _ in range(10):
        model.record(300)
    for _ in range(10):
        model.record(30)
    assert model.estimate() == 30


@given(st.lists(st.floats(0, 1e5), min_size=1, max_size=50), st.floats(0, 1))
def test_quantile_lies_within_the_observed_range(durations: list[float], q: float) -> None:
    """The estimate is always one of the plausible durations seen."""
    model = LatencyModel(quantile=q, min_samples=1)
    for d in durations:
        model.record(d)
    estimate = model.estimate()
    assert estimate is not None
    assert min(durations) - 1e-6 <= estimate <= max(durations) + 1e-6


def test_endpoint_rule() -> None:
    """Polling uses /result (one request per check); /status only when the queue position is wanted."""
    assert endpoint_for() == "result"
    assert endpoint_for(want_queue_position=True) == "status"


def test_one_heap_serves_many_jobs_in_due_order() -> None:
    """A single scheduler pops exactly the jobs that are due, earliest first."""
    queue = PollQueue()
    queue.push("b", 5.0)
    queue.push("a", 1.0)
    queue.push("c", 9.0)
    assert queue.next_due() == 1.0
    assert queue.pop_due(5.0) == ["a", "b"]
    assert queue.pop_due(5.0) == []
    assert len(queue) == 1 and "c" in queue


def test_rescheduling_and_removal_skip_stale_entries() -> None:
    """Re-pushing a job moves it; removing a cancelled job means it is never polled again."""
    queue = PollQueue()
    queue.push("a", 1.0)
    queue.push("b", 2.0)
    queue.push("a", 10.0)
    queue.remove("b")
    assert queue.next_due() == 10.0
    assert queue.pop_due(9.0) == []
    assert queue.pop_due(10.0) == ["a"]
    assert queue.next_due() is None


def test_pop_due_limit() -> None:
    """A scheduler can take due jobs in batches no larger than its free capacity."""
    queue = PollQueue()
    for i in range(5):
        queue.push(i, float(i))
    assert queue.pop_due(10, limit=2) == [0, 1]
    assert len(queue) == 3


def test_bad_schedule_rejected() -> None:
    """A schedule that would poll in a tight loop is refused when configured."""
    with pytest.raises(ValueError):
        PollSchedule(first=0)
    with pytest.raises(ValueError):
        PollSchedule(cap=10, max_idle=5)


def test_learned_plan_checks_a_fixed_latency_once_right_after_it() -> None:
    """Jobs that always take 3 s are checked once, at 3 s: one request finds each finished."""
    model = LatencyModel(min_samples=5)
    for _ in range(50):
        model.record(3.0)
    ages = model.check_ages(lateness=0.03, cap=10.0, floor=0.1)
    assert ages == (3.0,)
    due = PollSchedule().first_due(submitted_at=100.0, now=100.0, ages=ages)
    assert due == pytest.approx(103.0)


def _lateness_share(ages: tuple[float, ...], durations: list[float]) -> float:
    """Mean lateness of jobs of these durations checked at ``ages``, as a share of the mean duration."""
    import bisect

    late = [ages[bisect.bisect_left(ages, d)] - d for d in durations if d <= ages[-1]]
    return sum(late) / len(late) / (sum(durations) / len(durations))


@pytest.mark.parametrize("shape", ["uniform 2-4 s", "lognormal median 2.5 s, sigma 0.5"])
def test_learned_plan_keeps_the_lateness_it_promises_on_new_jobs(shape: str) -> None:
    """Planned from 200 finished jobs, the checks find NEW jobs within the lateness budget (not twice it)."""
    import math
    import random

    from batchrun.polling import plan_check_ages

    rng = random.Random(3)

    def draw() -> float:
        return rng.uniform(2, 4) if shape.startswith("uniform") else rng.lognormvariate(math.log(2.5), 0.5)

    learned = [draw() for _ in range(200)]
    fresh = [draw() for _ in range(5000)]
    tight = plan_check_ages(learned, lateness=0.03, cap=10.0, floor=0.1)
    loose = plan_check_ages(learned, lateness=0.10, cap=10.0, floor=0.1)
    assert _lateness_share(tight, fresh) < 0.03 * 1.2
    assert _lateness_share(loose, fresh) < 0.10 * 1.2
    assert len(loose) < len(tight)  # a looser budget buys fewer checks


def test_learned_plan_never_leaves_more_than_cap_between_checks() -> None:
    """However the durations spread, consecutive checks (the first included) are at most cap apart."""
    import random

    from batchrun.polling import plan_check_ages

    rng = random.Random(3)
    learned = [rng.uniform(2, 4) for _ in range(200)]
    ages = plan_check_ages(learned, lateness=0.03, cap=1.0, floor=0.1)
    assert list(ages) == sorted(ages) and ages[0] <= 1.0
    assert all(b - a <= 1.0 + 1e-9 for a, b in zip(ages, ages[1:], strict=False))
    assert ages[-1] == max(learned)  # the last planned check sees every learned duration


def _checks_and_lateness(
    ages: tuple[float, ...], durations: list[float], cap: float, patient: bool = False
) -> tuple[float, float]:
    """Checks per job and mean lateness (share of the mean duration) when the schedule follows ``ages``."""
    schedule = PollSchedule(cap=cap, max_idle=max(cap, 120.0))  # patient_wait: the default 30 s
    checks = late = 0.0
    for duration in durations:
        state, now = PollState(submitted_at=0.0), 0.0
        while True:
            now = schedule.next_due(state, now, ages=ages, patient=patient)
            checks += 1
            if now >= duration:
                late += now - duration
                break
            state = state.checked(now)
    return checks / len(durations), late / sum(durations)


def test_tied_durations_do_not_make_the_plan_check_everywhere() -> None:
    """Durations reported in whole seconds (many ties) still get a sparse plan that keeps its promise."""
    import math
    import random

    from batchrun.polling import plan_check_ages

    rng = random.Random(11)
    learned = [float(round(rng.lognormvariate(math.log(30), 0.3))) for _ in range(200)]
    fresh = [rng.lognormvariate(math.log(30), 0.3) for _ in range(5000)]
    checks, late = _checks_and_lateness(plan_check_ages(learned, lateness=0.03, cap=10, floor=0.1), fresh, 10)
    assert checks < 9 and late < 0.06  # counting tied jobs as unfinished made it 18.6 checks


@pytest.mark.parametrize("cap", [10.0, 600.0])
def test_one_slow_outlier_does_not_spoil_the_plan_for_the_rest(cap: float) -> None:
    """One job of an hour among jobs of a minute: the others are still found promptly with few checks."""
    import math
    import random

    from batchrun.polling import plan_check_ages

    rng = random.Random(11)
    learned = [rng.lognormvariate(math.log(60), 0.3) for _ in range(199)] + [3600.0]
    fresh = [rng.lognormvariate(math.log(60), 0.3) for _ in range(5000)]
    checks, late = _checks_and_lateness(plan_check_ages(learned, lateness=0.03, cap=cap, floor=0.1), fresh, cap)
    assert checks < 12 and late < 0.05


def test_plan_ignores_durations_that_are_not_finite_or_negative() -> None:
    """Garbage durations neither hang the plan (an inf) nor distort it (a NaN)."""
    from batchrun.polling import plan_check_ages

    assert plan_check_ages([1.0, float("nan"), 3.0, 2.0, float("inf"), -4.0], lateness=0.03, cap=10.0, floor=0.1)[-1] == 3.0
    assert plan_check_ages([float("inf")], lateness=0.03, cap=10.0) == ()


def test_a_zero_floor_never_makes_the_schedule_check_again_at_once() -> None:
    """Sub-second jobs learned as 0 s with floor 0: the next check still lies in the future."""
    schedule = PollSchedule(floor=0.0)
    assert schedule.next_due(PollState(submitted_at=5.0), 5.0, ages=(0.0,)) > 5.0
    assert schedule.next_due(PollState(submitted_at=5.0), 5.0) > 5.0


def test_exact_durations_make_the_plan_patient_before_any_job_could_be_done() -> None:
    """Jobs of 2-4 minutes whose durations RunComfy reports: no check every cap while none can be done yet."""
    import random

    from batchrun.polling import plan_check_ages

    rng = random.Random(5)
    learned = [rng.uniform(120, 240) for _ in range(200)]
    fresh = [rng.uniform(120, 240) for _ in range(3000)]
    impatient = plan_check_ages(learned, lateness=0.03, cap=10.0, floor=0.1)
    patient = plan_check_ages(learned, lateness=0.03, cap=10.0, floor=0.1, patient=True)
    assert impatient[0] <= 10.0  # the cap from the submit on
    assert min(learned) <= patient[0] <= min(learned) + 10.0  # the first check where jobs start to finish
    assert all(b - a <= 10.0 + 1e-9 for a, b in zip(patient, patient[1:], strict=False))  # then cap apart
    checks_before, late_before = _checks_and_lateness(impatient, fresh, 10.0)
    checks, late = _checks_and_lateness(patient, fresh, 10.0, patient=True)
    assert checks < 12 < 15 < checks_before  # 10.8 against 18.8 checks per job
    assert late < 0.03 * 1.2 and late_before < 0.03 * 1.2  # the same promise kept


def test_the_plan_is_patient_only_while_every_recent_duration_is_exact() -> None:
    """One duration inferred from noticing the job (not RunComfy's timestamps) ends patience until it is forgotten."""
    model = LatencyModel(min_samples=5, window=5)
    for seconds in (120.0, 150.0, 180.0, 210.0, 240.0):
        model.record(seconds, exact=True)
    assert model.exact
    assert model.check_ages(lateness=0.03, cap=10.0, floor=0.1)[0] >= 120.0
    model.record(200.0, exact=False)
    assert not model.exact
    assert model.check_ages(lateness=0.03, cap=10.0, floor=0.1)[0] <= 10.0  # replanned at once
    for seconds in (130.0, 160.0, 190.0, 220.0):
        model.record(seconds, exact=True)
    assert not model.exact  # the guess is still among the last 5
    model.record(235.0, exact=True)
    assert model.exact


def test_a_patient_plan_checks_every_patient_wait_before_its_first_age_then_every_cap() -> None:
    """Before the first planned age a patient schedule checks every 30 s (an early failure is seen within it), after it every cap."""
    schedule = PollSchedule(cap=10.0, max_idle=120.0)
    ages = (150.0, 160.0, 170.0)
    fresh = PollState(submitted_at=0.0)
    assert schedule.next_due(fresh, 0.0, ages=ages, patient=True) == pytest.approx(30.0)
    assert schedule.next_due(fresh, 0.0, ages=ages) == pytest.approx(10.0)  # a plan from guesses: cap
    assert schedule.next_due(fresh.checked(120.0), 120.0, ages=ages, patient=True) == pytest.approx(150.0)
    assert schedule.next_due(fresh.checked(30.0), 30.0, ages=ages, patient=True) == pytest.approx(60.0)
    assert schedule.next_due(fresh.checked(150.0), 150.0, ages=ages, patient=True) == pytest.approx(160.0)


def test_a_job_shorter_than_any_learned_one_makes_the_plan_start_again() -> None:
    """Jobs of minutes, then a clip of one minute: the cached plan is dropped at once, not 50 jobs later."""
    model = LatencyModel(min_samples=5)
    for seconds in range(120, 240, 2):
        model.record(float(seconds), exact=True)
    assert model.check_ages(lateness=0.03, cap=10.0, floor=0.1)[0] >= 120.0
    model.record(60.0, exact=True)
    assert model.check_ages(lateness=0.03, cap=10.0, floor=0.1)[0] <= 60.0 + 10.0
