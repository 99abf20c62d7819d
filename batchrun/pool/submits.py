"""Submitting: claim pending jobs as in-flight slots free up, and POST each one (a ``Runner`` mixin).

A job is marked ``submitting`` (its estimated cost charged against the campaign's budget in the
same transaction) before its POST, and ``queued`` with its request id right after; an answer
that was lost follows the ``--on-unknown-submit`` policy.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

import anyio
import httpx

from batchrun.api import SubmitOutcomeUnknown
from batchrun.domain import Job
from batchrun.errors import (
    AuthError,
    InsufficientBalanceError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
    message_of,
)
from batchrun.polling import PollState
from batchrun.pool.polls import Tracked
from batchrun.states import JobState
from batchrun.store import BudgetReachedError, StaleJobError

if TYPE_CHECKING:  # pragma: no cover
    from batchrun.pool.runner import Runner


class Submitting:
    """Mixed into ``Runner``: the submitter and each job's submit."""

    async def _submit_all(self: Runner) -> None:
        """Claim pending jobs as slots free up (locally and campaign-wide) and submit each one."""
        store, options = self.store, self.options
        while not self._stop_submitting:
            await self._submit_pause()
            if not await self.slots.acquire():
                return
            room = self.slots.cap - self.slots.used + 1  # the slot just acquired and the others free
            claimed = store.claim_pending(self.campaign_id, options.runner_id, limit=room, cap=options.concurrency,
                                          lease_seconds=options.lease_seconds, exclude=self._given_up)
            if not claimed:
                self.slots.release()
                if not self._submitting_now and not store.has_pending(
                    self.campaign_id, besides=options.runner_id, exclude=self._given_up
                ):
                    return  # nothing left that this runner could ever submit
                # the cap is full (our jobs or other runners'), or our own submits may hand jobs back
                await self.slots.changed(timeout=options.heartbeat_seconds)
                continue
            for _ in claimed[1:]:
                self.slots.take()
            for job in claimed:
                self._active += 1
                self._submitting_now += 1
                assert self._tg is not None
                self._tg.start_soon(self._submit_one, job)

    async def _submit_pause(self: Runner) -> None:
        """After a submit that kept failing (429s, 5xx), let the whole run cool down before the next."""
        delay = self._pause_until - self.clock.monotonic()
        if delay > 0:
            await self.clock.sleep(delay)

    def _deferred(self: Runner, job: Job, reason: str) -> None:
        """A submit ran out of retries: cool the run down, and give up on this job after a few tries."""
        count = self._deferrals[job.id] = self._deferrals.get(job.id, 0) + 1
        self._cooldown = min(300.0, self._cooldown * 2 if self._cooldown else 15.0)
        self._pause_until = self.clock.monotonic() + self._cooldown
        if count >= 3:
            self._given_up.add(job.id)
            self.progress.message(f"{job.key}: submit failed {count} times ({reason}); left pending for the next run")
        else:
            self.progress.message(
                f"{job.key}: submit kept failing ({reason}); pausing submissions {self._cooldown:.0f}s"
            )

    def _throttled(self: Runner, job: Job, error: RateLimitedError) -> None:
        """A 429 while RunComfy runs jobs of ours. With ``Retry-After``, submits pause that long.
        Without, it is taken as a concurrency limit (none is published): the in-flight cap drops
        to what RunComfy holds and is probed upward again after a hold. Either way the job is
        pending again, not counted as a failed submit."""
        now = self.clock.monotonic()
        in_flight = len(self._tracked)
        if error.retry_after is not None:
            wait = min(float(error.retry_after), self.client.retry.retry_after_cap)
            self._pause_until = max(self._pause_until, now + wait)
        elif self.slots.limit_to(in_flight, hold=self.options.throttle_hold_seconds):
            self.progress.message(f"RunComfy refused a submit (429) while {in_flight} jobs are in flight: "
                                  f"at most {self.slots.cap} at once for now, more as these finish "
                                  f"(one more tried every {self.options.throttle_hold_seconds:.0f}s)")
        self.store.record_event(job.id, "submit_throttled", {"error": message_of(error), "in_flight": in_flight})

    def _budget_reached(self: Runner, job: Job, error: BudgetReachedError) -> None:
        """The store refused the job's submission: it would pass the budget (whoever spent it)."""
        if error.cost is None:
            reason = (f"budget: no price is known for {job.model} ({job.key}); "
                      "jobs without a price are not submitted under a budget")
        else:
            reason = (f"budget reached: ${error.committed:,.2f} committed of ${error.budget:,.2f}; "
                      f"{job.key} (${error.cost:,.2f}) and the jobs after it stay pending")
        self.stop_submitting(reason)

    async def _submit_one(self: Runner, job: Job) -> None:
        """Submit one job (holding its slot), then hand it to the scheduler."""
        keep_slot = False
        try:
            for _ in range(self.options.max_resubmits + 1):
                outcome = await self._try_submit(job)
                if outcome == "again":  # a resubmission is paid for again: the budget is checked again
                    continue
                keep_slot = outcome == "submitted"
                return
        finally:
            self._submitting_now -= 1
            if not keep_slot:
                with anyio.CancelScope(shield=True):  # left pending: give the claim back
                    self.store.unclaim([job.id], self.options.runner_id)
                self.slots.release()
                self._finish_one()
            else:
                self.slots.notify()  # the submitter may be waiting to learn whether more is coming

    async def _try_submit(self: Runner, job: Job) -> str:
        async with self._post_lanes:  # the job stays `pending` until its POST really starts
            return await self._post(job)

    async def _post(self: Runner, job: Job) -> str:
        """POST the job, again after each certain refusal (a 429, a 5xx, no connection) that the
        retry policy allows; between tries the job is `pending` again and its cost refunded, so a
        Ctrl-C or a crash during the wait leaves nothing in doubt, and nothing is posted after a stop."""
        started = self.clock.monotonic()
        for attempt in itertools.count(1):
            if self._stop_submitting:
                return "skipped"
            try:
                job = self.store.begin_submit(job.id, budget=self.options.budget)
            except StaleJobError:  # cancelled or claimed meanwhile
                return "skipped"
            except BudgetReachedError as error:
                self._budget_reached(job, error)
                return "refused"
            self._moved(job, JobState.PENDING, JobState.SUBMITTING)
            try:
                return await self._post_once(job)
            except (TransientApiError, httpx.TransportError) as error:
                # the server answered with an error (or we never connected): nothing was created
                self._back_to_pending(job, error)
                if isinstance(error, RateLimitedError) and self._tracked:
                    self._throttled(job, error)
                    return "throttled"
                wait = self.client.retry.decide(error, attempt, self.clock.monotonic() - started)
                if wait is None:
                    self._deferred(job, message_of(error))
                    return "deferred"
                self.store.record_event(job.id, "submit_retry", {"error": message_of(error), "wait_seconds": wait})
                self.progress.message(f"{job.key}: not submitted ({message_of(error)}); trying again in {wait:.0f}s")
                await self._sleep_unless_stopped(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post_once(self: Runner, job: Job) -> str:
        """One POST of a job now in `submitting`; certain refusals are raised to ``_post``."""
        self._posting += 1
        try:
            submission = await self.client.submit(job.model, dict(job.input))
        # cancelled (Ctrl-C twice, or no answer within the grace of an auth stop): the job stays
        # `submitting`, its cost charged, since the POST may have reached RunComfy
        except SubmitOutcomeUnknown as error:
            again = await self._unknown_submission(job, f"the submit answer was lost ({error})")
            return "again" if again else "held"
        except InsufficientBalanceError as error:
            self._back_to_pending(job, error)
            self.stop_submitting(f"RunComfy says the balance is insufficient ({error.message}); "
                                 "no new jobs are submitted, jobs in flight continue")
            return "refused"
        except AuthError as error:
            self._back_to_pending(job, error)
            self._auth_failed(error)
            return "refused"
        except PermanentApiError as error:
            self._fail(job, message_of(error), expected=JobState.SUBMITTING)
            return "failed"
        finally:
            self._posting -= 1
            self._post_answered.set()
        try:
            job = self.store.record_submission(job.id, submission.request_id)
        except StaleJobError as error:  # frozen past our lease: another runner applied the policy
            self._answer_came_too_late(job, submission.request_id, error)
            return "skipped"
        self.summary.submitted += 1
        self.slots.accepted()
        self._moved(job, JobState.SUBMITTING, JobState.QUEUED, submission.request_id)
        now = self.clock.monotonic()
        tracked = Tracked(job.id, job.key, job.model, submission.request_id, JobState.QUEUED, PollState(now))
        self._tracked[job.id] = tracked
        due = self.schedule.first_due(submitted_at=now, now=now, **self._learned(job.model))
        self._push(due, tracked)
        return "submitted"

    def _answer_came_too_late(self: Runner, job: Job, request_id: str, error: StaleJobError) -> None:
        """RunComfy created the job, but this runner was silent past its lease (a paused machine)
        and another runner already dealt with it as unknown: keep the request id on record."""
        now = error.actual.value if error.actual else "gone"
        self.store.record_event(job.id, "late_submission_answer", {"request_id": request_id, "state_now": now})
        self.progress.message(f"{job.key}: RunComfy created it as {request_id}, but another runner had meanwhile "
                              f"made it {now}; the request id is kept in its events")

    def _back_to_pending(self: Runner, job: Job, error: BaseException) -> None:
        self.store.return_unsubmitted(job.id, f"not submitted: {message_of(error)}")
        self._moved(job, JobState.SUBMITTING, JobState.PENDING, "not submitted")
