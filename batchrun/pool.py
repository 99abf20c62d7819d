"""The worker pool: the only place that coordinates the store, the API client and the downloader.

One anyio task group holds:

- the submitter, which walks pending jobs in id order and submits each once an in-flight slot
  is free (at most ``concurrency`` jobs submitted-and-unfinished at RunComfy at any moment);
- one scheduler, which keeps a single heap of (due time, job) and fires each poll when due,
  instead of a sleeping task per job;
- ``downloads`` download workers fed by a queue (a separate cap from the in-flight one).

Every step writes its intent to the store before the side effect (``submitting`` before the
POST, the request id right after it), so a crash at any line leaves a state ``resume`` reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup

from batchrun.api import RunComfyClient, SubmitOutcomeUnknown
from batchrun.clock import SYSTEM_CLOCK, Clock
from batchrun.download import Downloader, sha256_file
from batchrun.domain import Job
from batchrun.errors import (
    AuthError,
    BatchrunError,
    DownloadError,
    ForbiddenError,
    InsufficientBalanceError,
    PermanentApiError,
    PermanentDownloadError,
    RequestNotFoundError,
    TransientApiError,
)
from batchrun.outputs import destinations, keep_aside, sidecar_document, sidecar_path, write_json_atomically
from batchrun.polling import LatencyModel, PollQueue, PollSchedule, PollState
from batchrun.states import JobState
from batchrun.runs import Progress, RunOptions, RunSummary, SilentProgress, UnknownSubmitPolicy, new_runner_id
from batchrun.slots import Slots
from batchrun.store import BudgetReachedError, Store, StaleJobError

__all__ = [  # the run's values live in batchrun.runs and batchrun.slots; re-exported for callers
    "Progress", "RunOptions", "RunSummary", "Runner", "SilentProgress", "Slots", "UnknownSubmitPolicy",
    "new_runner_id",
]


#: seconds between looks at a job reported completed without output (about a minute in all)
EMPTY_OUTPUT_WAITS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
#: undocumented error answers to a poll in a row before the job is failed
ODD_ANSWERS_BEFORE_FAILING = 5

#: the states a runner takes over from a dead one (or from the previous run)
_TAKEN_OVER = (JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING, JobState.DOWNLOADING)


@dataclass
class _Tracked:
    """A job at RunComfy, as the scheduler sees it."""

    job_id: int
    key: str
    model: str
    request_id: str
    state: JobState
    poll: PollState  # submitted_at (monotonic) and checks so far
    resumed: bool = False  # submitted by an earlier run: its latency is unknown
    empty_outputs: int = 0
    odd_answers: int = 0  # undocumented error answers in a row
    via_status: bool = False  # /result refused while unfinished: check /status first


class Runner:
    """Runs one campaign's jobs to completion; see the module docstring."""

    def __init__(
        self,
        store: Store,
        *,
        campaign_id: int,
        campaign_name: str,
        output_dir: Path,
        client: RunComfyClient,
        downloader: Downloader,
        options: RunOptions = RunOptions(),
        progress: Progress | None = None,
        clock: Clock = SYSTEM_CLOCK,
        schedule: PollSchedule | None = None,
    ) -> None:
        self.store = store
        self.campaign_id = campaign_id
        self.output_dir = output_dir
        self.client = client
        self.downloader = downloader
        self.options = options
        self.progress = progress or SilentProgress()
        self.clock = clock
        self.schedule = schedule or PollSchedule(lateness=options.poll_lateness)
        self.latencies: dict[str, LatencyModel] = {}  # learned per model id
        self.summary = RunSummary(campaign=campaign_name, output_dir=output_dir)
        self.slots = Slots(options.local_concurrency or options.concurrency)
        self._queue = PollQueue()  # job id -> due time of its next check
        self._wake = anyio.Event()
        self._tracked: dict[int, _Tracked] = {}
        self._active = 0  # jobs being polled, submitted or downloaded
        self._idle = anyio.Event()
        self._stop_submitting = False
        self._submitting_done = False
        self._download_send, self._download_receive = anyio.create_memory_object_stream[Job](math.inf)
        self._tg: TaskGroup | None = None
        self._post_lanes = anyio.CapacityLimiter(options.submit_parallelism)
        self._submitting_now = 0  # submit tasks alive (they may hand their job back to pending)
        self._deferrals: dict[int, int] = {}  # job id -> submits that ran out of retries this run
        self._given_up: set[int] = set()  # jobs not to claim again this run
        self._cooldown = 0.0
        self._pause_until = 0.0

    # ------------------------------------------------------------------ entry points

    async def run(self) -> RunSummary:
        started = self.clock.monotonic()
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await self._resume()
                tg.start_soon(self._scheduler)
                tg.start_soon(self._heartbeat)
                for _ in range(self.options.downloads):
                    tg.start_soon(self._download_worker)
                await self._submit_all()
                self._submitting_done = True
                self._check_idle()
                await self._idle.wait()
                tg.cancel_scope.cancel()
        finally:
            self._download_send.close()
            with anyio.CancelScope(shield=True):
                self.store.release_runner(self.options.runner_id)  # others may take over at once
            self.summary.wall_seconds = self.clock.monotonic() - started
            self._fill_counts()
        return self.summary

    def interrupt(self) -> None:
        """First Ctrl-C: submit nothing more, finish what RunComfy already has, then stop."""
        self.summary.interrupted = True
        at_runcomfy, posting = len(self._tracked), self._submitting_now
        under_way = f" and {posting} submit(s) under way" if posting else ""
        self.stop_submitting(
            f"Stopping: no new submissions. Waiting for {at_runcomfy} job(s) at RunComfy (already paid for)"
            f"{under_way} to finish and download; press Ctrl-C again to exit now (`batchrun run` resumes them)."
        )

    def abort(self) -> None:
        """Second Ctrl-C: stop at once. Every state is already recorded, so the next run resumes."""
        self.summary.interrupted = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def stop_submitting(self, reason: str) -> None:
        """Submit nothing more; jobs already at RunComfy are still polled and downloaded."""
        if not self._stop_submitting:
            self._stop_submitting = True
            self.summary.stop_reason = self.summary.stop_reason or reason
            self.progress.message(reason)
            self.slots.close()  # wake a submitter waiting for a slot
            self._check_idle()

    # ------------------------------------------------------------------ resume

    async def _resume(self) -> None:
        """Take over what earlier runs (or dead runners) left at RunComfy, then verify done files."""
        store, cid, options = self.store, self.campaign_id, self.options
        counts = store.count_by_state(cid)
        self.progress.started(sum(counts.values()), counts)
        if options.alone:
            store.release_claims(cid)  # a crashed run's unsubmitted claims must not hold capacity
        taken = store.take_over(cid, options.runner_id, lease_seconds=options.lease_seconds,
                                states=_TAKEN_OVER, force=options.alone, include_unowned=True)
        await self._adopt(taken, at_start=True)
        if self.options.verify_done and counts.get(JobState.DONE, 0):
            # read page by page in the background: loading every done job here kept a resume of
            # 50,000 done jobs from submitting for over a second
            self._active += 1
            assert self._tg is not None
            self._tg.start_soon(self._verify_done, store.now())

    async def _adopt(self, jobs: list[Job], *, at_start: bool = False) -> None:
        """Carry on with jobs taken over: poll those at RunComfy, download, apply the submit policy."""
        now = self.clock.monotonic()
        for job in jobs:
            if job.state is JobState.SUBMITTING:
                why = "found in `submitting` after an interrupted run" if at_start else "its runner stopped answering"
                if await self._unknown_submission(job, why, resumed=at_start):
                    self.store.unclaim([job.id], self.options.runner_id)  # pending again: the submitter claims it
            elif job.state is JobState.DOWNLOADING:
                self._active += 1
                self._download_send.send_nowait(job)
            elif not job.request_id:  # cannot happen through the store's API; be defensive
                self._fail(job, "no request id recorded for a submitted job")
            elif job.id not in self._tracked:
                self.slots.take()
                self._active += 1
                tracked = _Tracked(job.id, job.key, job.model, job.request_id, job.state, PollState(now), resumed=True)
                self._tracked[job.id] = tracked
                self._push(now, tracked)  # poll taken-over jobs at once

    async def _heartbeat(self) -> None:
        """Renew this runner's leases; take over the jobs of runners that stopped renewing theirs."""
        options = self.options
        while True:
            await self.clock.sleep(options.heartbeat_seconds)
            self.store.renew_leases(options.runner_id, lease_seconds=options.lease_seconds)
            if not options.alone:
                taken = self.store.take_over(self.campaign_id, options.runner_id, lease_seconds=options.lease_seconds,
                                             states=_TAKEN_OVER, include_unowned=False)
                if taken:
                    self.progress.message(f"took over {len(taken)} job(s) from a runner that stopped answering")
                    await self._adopt(taken)
                self._check_idle()

    async def _verify_done(self, started: datetime) -> None:
        """Fetch again every done job whose file is missing or no longer matches its sha256
        (jobs this run finished, updated since ``started``, are not checked again)."""
        try:
            for job in self.store.iter_jobs(self.campaign_id, states=[JobState.DONE]):
                if job.updated_at is not None and job.updated_at >= started:
                    continue
                if not self.options.alone and not _inside(job.output_path, self.output_dir):
                    continue  # another machine's file: that runner verifies it
                if await anyio.to_thread.run_sync(_file_matches, job):
                    continue
                if not job.result_urls:
                    self.progress.message(f"{job.key}: file missing or corrupt and no result URL recorded")
                    continue
                try:
                    job = self.store.mark_downloading(job.id, job.result_urls)
                except StaleJobError:
                    continue
                self._moved(job, JobState.DONE, JobState.DOWNLOADING, "file missing or corrupt: fetching again")
                self._active += 1
                self._download_send.send_nowait(job)
        finally:
            self._finish_one()

    async def _unknown_submission(self, job: Job, why: str, *, resumed: bool = False) -> bool:
        """Apply the ``submitting`` policy. Returns True when the job should be submitted again."""
        policy = self.options.unknown_submit
        if policy is UnknownSubmitPolicy.RESUBMIT and self.store.is_superseded(job.id):
            # a newer revision replaced it: paying again for the old input helps nobody
            job = self.store.mark_cancelled(job.id, f"superseded while its submission was unknown: {why}")
            self._moved(job, JobState.SUBMITTING, JobState.CANCELLED, "superseded")
            return False
        if policy is UnknownSubmitPolicy.RESUBMIT:
            self.store.reset_to_pending(job.id, f"resubmitting: {why} (--on-unknown-submit=resubmit)")
            self._moved(job, JobState.SUBMITTING, JobState.PENDING, "resubmitting (may pay twice)")
            return True
        if policy is UnknownSubmitPolicy.FAIL:
            self._fail(job, f"submission outcome unknown: {why}", expected=JobState.SUBMITTING)
            return False
        self.store.record_event(job.id, "held", {"reason": why})
        self.store.release(job.id)  # held: no lease, so it neither counts against the cap nor moves
        self.summary.held.append(job.key)
        if not resumed:
            self.progress.message(
                f"{job.key}: the submit answer was lost; held in `submitting` (see --on-unknown-submit)"
            )
        return False

    # ------------------------------------------------------------------ submitting

    async def _submit_all(self) -> None:
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

    async def _submit_pause(self) -> None:
        """After a submit that kept failing (429s, 5xx), let the whole run cool down before the next."""
        delay = self._pause_until - self.clock.monotonic()
        if delay > 0:
            await self.clock.sleep(delay)

    def _deferred(self, job: Job, reason: str) -> None:
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

    def _budget_reached(self, job: Job, error: BudgetReachedError) -> None:
        """The store refused the job's submission: it would pass the budget (whoever spent it)."""
        if error.cost is None:
            reason = (f"budget: no price is known for {job.model} ({job.key}); "
                      "jobs without a price are not submitted under a budget")
        else:
            reason = (f"budget reached: ${error.committed:,.2f} committed of ${error.budget:,.2f}; "
                      f"{job.key} (${error.cost:,.2f}) and the jobs after it stay pending")
        self.stop_submitting(reason)

    async def _submit_one(self, job: Job) -> None:
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

    async def _try_submit(self, job: Job) -> str:
        async with self._post_lanes:  # the job stays `pending` until its POST really starts
            return await self._post(job)

    async def _post(self, job: Job) -> str:
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
            submission = await self.client.submit(job.model, dict(job.input))
        except anyio.get_cancelled_exc_class():
            if self.summary.auth_failed:  # stopped because the token is refused: this POST created nothing
                with anyio.CancelScope(shield=True):
                    self.store.reset_to_pending(job.id, "not submitted: the run stopped on an auth error")
            raise  # otherwise (Ctrl-C twice) it stays `submitting`: the POST may have reached RunComfy
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
            self._fail(job, _api_message(error), expected=JobState.SUBMITTING)
            return "failed"
        except (TransientApiError, httpx.TransportError) as error:
            # the server answered with an error (or we never connected): nothing was created
            self._back_to_pending(job, error)
            self._deferred(job, _api_message(error))
            return "deferred"
        job = self.store.record_submission(job.id, submission.request_id)
        self.summary.submitted += 1
        self._moved(job, JobState.SUBMITTING, JobState.QUEUED, submission.request_id)
        now = self.clock.monotonic()
        tracked = _Tracked(job.id, job.key, job.model, submission.request_id, JobState.QUEUED, PollState(now))
        self._tracked[job.id] = tracked
        due = self.schedule.first_due(submitted_at=now, now=now, **self._learned(job.model))
        self._push(due, tracked)
        return "submitted"

    def _back_to_pending(self, job: Job, error: BaseException) -> None:
        self.store.reset_to_pending(job.id, f"not submitted: {_api_message(error)}")
        self._moved(job, JobState.SUBMITTING, JobState.PENDING, "not submitted")

    # ------------------------------------------------------------------ polling

    def _learned(self, model: str) -> dict[str, Any]:
        """What the schedule may use of the model's learned durations: ``next_due``'s keywords."""
        latency = self.latencies.get(model)
        if latency is None:
            return {}
        s = self.schedule
        return {
            "estimate": latency.estimate(),
            "ages": latency.check_ages(lateness=s.lateness, cap=s.cap, floor=s.floor),
            "patient": latency.exact,
        }

    def _next_check(self, tracked: _Tracked, now: float) -> float:
        """When to look at an unfinished job again: by the learned plan, or, for a job an earlier
        run submitted (its age is unknown, the plan's waits would be guesses), by plain backoff
        up to the cap."""
        if tracked.resumed:
            return self.schedule.next_due(tracked.poll, now)
        return self.schedule.next_due(tracked.poll, now, **self._learned(tracked.model))

    def _push(self, due: float, tracked: _Tracked) -> None:
        self._queue.push(tracked.job_id, due)
        self._wake.set()

    async def _scheduler(self) -> None:
        """Fire each job's poll when it is due; one task, one heap."""
        assert self._tg is not None
        while True:
            due = self._queue.next_due()
            if due is None:
                await self._wait_for_wake()
                continue
            delay = due - self.clock.monotonic()
            if delay > 0:
                with anyio.move_on_after(delay):
                    await self._wait_for_wake()
                continue
            for job_id in self._queue.pop_due(self.clock.monotonic()):
                tracked = self._tracked.get(int(job_id))  # type: ignore[call-overload]
                if tracked is not None:
                    self._tg.start_soon(self._poll_one, tracked)

    async def _wait_for_wake(self) -> None:
        wake = self._wake
        await wake.wait()
        if self._wake is wake:
            self._wake = anyio.Event()

    async def _check(self, tracked: _Tracked) -> Any:
        """One look at a job: ``/result`` (status and output in one answer), or, for a job whose
        ``/result`` refused while unfinished, ``/status`` and then ``/result`` once it is done."""
        if tracked.via_status:
            status = await self.client.status(tracked.request_id)
            if not status.is_terminal:
                return status
        return await self.client.result(tracked.request_id)

    async def _poll_one(self, tracked: _Tracked) -> None:
        try:
            report = await self._check(tracked)
        except (RequestNotFoundError, ForbiddenError) as error:  # documented: this request is gone for us
            self._finish_at_runcomfy(tracked)
            self._fail_tracked(tracked, f"RunComfy no longer knows request {tracked.request_id}: {_api_message(error)}")
            return
        except AuthError as error:
            self._auth_failed(error)
            return
        except InsufficientBalanceError as error:  # API.md: stop submitting, keep polling jobs in flight
            self.stop_submitting(f"RunComfy says the balance is insufficient ({error.message}); "
                                 "no new jobs are submitted, jobs in flight continue")
            self._poll_later(tracked, error)
            return
        except PermanentApiError as error:
            # an undocumented refusal (a bare 404, an odd 4xx): the job is paid for, so look again
            # a few times before giving up on it, through /status from now on (API.md documents
            # /result as answering while unfinished, but another implementation may refuse)
            tracked.odd_answers += 1
            tracked.via_status = True
            if tracked.odd_answers >= ODD_ANSWERS_BEFORE_FAILING:
                self._finish_at_runcomfy(tracked)
                self._fail_tracked(tracked, f"{_api_message(error)} ({tracked.odd_answers} times in a row)")
            else:
                self._poll_later(tracked, error)
            return
        except (TransientApiError, httpx.TransportError) as error:
            self._poll_later(tracked, error)
            return
        tracked.odd_answers = 0
        self._on_report(tracked, report)

    def _poll_later(self, tracked: _Tracked, error: BaseException) -> None:
        self.store.record_event(tracked.job_id, "poll_error", {"error": _api_message(error)})
        self._push(self.clock.monotonic() + self.schedule.cap, tracked)

    def _on_report(self, tracked: _Tracked, report: Any) -> None:
        now = self.clock.monotonic()
        status = report.status
        if status in ("queued", "running"):
            if status == "running" and tracked.state is JobState.QUEUED:
                if not self._move_tracked(tracked, JobState.QUEUED, JobState.RUNNING, self.store.mark_running):
                    return
            tracked.poll = tracked.poll.checked(now)
            self._push(self._next_check(tracked, now), tracked)
            return
        if status == "completed":
            urls = tuple(report.output_urls)
            if not urls:
                # already billed: the output may lag the status, so keep looking for about a minute
                if tracked.empty_outputs < len(EMPTY_OUTPUT_WAITS):
                    self._push(now + EMPTY_OUTPUT_WAITS[tracked.empty_outputs], tracked)
                    tracked.empty_outputs += 1
                    return
                self._finish_at_runcomfy(tracked)
                self._fail_tracked(tracked, "RunComfy reported the job completed but returned no output URL "
                                            f"(asked {tracked.empty_outputs + 1} times over a minute)")
                return
            if not tracked.resumed:
                duration, exact = _duration(report, tracked.poll, now)
                self.latencies.setdefault(tracked.model, LatencyModel()).record(duration, exact=exact)
            self._finish_at_runcomfy(tracked)
            try:
                job = self.store.mark_downloading(tracked.job_id, urls, from_state=tracked.state)
            except StaleJobError:
                self._finish_one()
                return
            self._moved(job, tracked.state, JobState.DOWNLOADING)
            self._download_send.send_nowait(job)  # stays active until downloaded
            return
        self._finish_at_runcomfy(tracked)
        if status == "cancelled":
            try:
                job = self.store.mark_cancelled(tracked.job_id, "cancelled at RunComfy")
                self._moved(job, tracked.state, JobState.CANCELLED)
            except StaleJobError:
                pass
            self._finish_one()
            return
        self._fail_tracked(tracked, report.error or "generation failed at RunComfy (no reason given)")

    def _move_tracked(self, tracked: _Tracked, old: JobState, new: JobState, move: Callable[[int], Job]) -> bool:
        try:
            job = move(tracked.job_id)
        except StaleJobError:
            # changed behind our back (e.g. `batchrun cancel`): stop following it
            self._finish_at_runcomfy(tracked)
            self._finish_one()
            return False
        tracked.state = new
        self._moved(job, old, new)
        return True

    def _finish_at_runcomfy(self, tracked: _Tracked) -> None:
        """RunComfy is done with this job: its in-flight slot is free."""
        if self._tracked.pop(tracked.job_id, None) is not None:
            self.slots.release()

    def _fail_tracked(self, tracked: _Tracked, error: str) -> None:
        try:
            job = self.store.mark_failed(tracked.job_id, error)
            self._moved(job, tracked.state, JobState.FAILED, error)
            self.summary.failures.append((job.key, error))
        except StaleJobError:
            pass
        self._finish_one()

    # ------------------------------------------------------------------ downloading

    async def _download_worker(self) -> None:
        async for job in self._download_receive:
            try:
                await self._download(job)
            finally:
                self._finish_one()

    async def _download(self, job: Job) -> None:
        dests = destinations(self.output_dir, job.output_name, job.result_urls)
        files: list[dict[str, Any]] = []
        try:
            for url, dest in zip(job.result_urls, dests, strict=True):
                self._make_room(job, dest)
                fetched = await self.downloader.fetch(url, dest)
                files.append(
                    {"path": str(fetched.path), "url": url, "size": fetched.size, "sha256": fetched.sha256}
                )
        except PermanentDownloadError as error:
            self._fail(job, f"download failed: {error.message}", expected=JobState.DOWNLOADING)
            return
        except OSError as error:  # the local disk, not the network: nothing later jobs can do better
            self.store.record_event(job.id, "download_error", {"error": str(error)})
            self.stop_submitting(f"cannot write {job.output_name} in {self.output_dir}: {error.strerror or error}; "
                                 "no new jobs are submitted")
            return
        except (DownloadError, httpx.HTTPError) as error:
            message = getattr(error, "message", None) or str(error) or type(error).__name__
            self.store.record_event(job.id, "download_error", {"error": message})
            self.progress.message(f"{job.key}: download interrupted ({message}); the next run resumes it")
            return
        primary = files[0]
        await anyio.to_thread.run_sync(  # it fsyncs: keep the event loop free meanwhile
            write_json_atomically,
            sidecar_path(Path(primary["path"])),
            sidecar_document(job, campaign=self.summary.campaign, files=files, timings=_timings(job)),
        )
        try:
            done = self.store.mark_done(  # the "downloaded" events ride in the same commit
                job.id, output_path=primary["path"], size=primary["size"], sha256=primary["sha256"],
                downloaded=[{"url": f["url"], "size": f["size"], "sha256": f["sha256"]} for f in files],
            )
        except StaleJobError:
            return
        self.summary.downloaded += 1
        self._moved(done, JobState.DOWNLOADING, JobState.DONE)

    def _make_room(self, job: Job, dest: Path) -> None:
        """Keep the file of an older revision of this job when the new one takes its name."""
        if not dest.exists():
            return
        for other in self.store.find_by_output_path(str(dest)):
            if other.id != job.id:
                moved = keep_aside(dest, other.revision)
                self.store.update_output_path(other.id, str(moved))
                self.progress.message(f"{other.key}: kept revision {other.revision}'s file as {moved.name}")
                return

    # ------------------------------------------------------------------ bookkeeping

    def _moved(self, job: Job, old: JobState | None, new: JobState, note: str | None = None) -> None:
        self.progress.moved(job.key, old, new, note)

    def _fail(self, job: Job, error: str, *, expected: JobState | None = None) -> None:
        try:
            failed = self.store.mark_failed(job.id, error)
        except StaleJobError:
            return
        self.summary.failures.append((job.key, error))
        self._moved(failed, expected or job.state, JobState.FAILED, error)

    def _auth_failed(self, error: AuthError) -> None:
        """The token was refused: stop everything at once (every state is already recorded)."""
        if not self.summary.auth_failed:
            self.summary.auth_failed = True
            self.summary.stop_reason = f"{error.message}; the run stopped"
            self.progress.message(self.summary.stop_reason)
        self._stop_submitting = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def _finish_one(self) -> None:
        self._active -= 1
        self._check_idle()

    def _check_idle(self) -> None:
        if self._active > 0 or self._tracked or not (self._submitting_done or self._stop_submitting):
            return
        if not (self.options.alone or self._stop_submitting):
            # another runner may still die and leave jobs to take over: stay while others work
            if self.store.unfinished_elsewhere(self.campaign_id, self.options.runner_id):
                return
        self._idle.set()

    def _fill_counts(self) -> None:
        counts = self.store.count_by_state(self.campaign_id)
        self.summary.counts = {state: counts.get(state, 0) for state in JobState}
        if self.options.alone:  # with other runners, their submits in progress are not ours to report
            held = set(self.summary.held)
            for job in self.store.jobs_in_states(self.campaign_id, [JobState.SUBMITTING], include_superseded=False):
                if job.key not in held:
                    self.summary.held.append(job.key)


def _inside(path: str | None, folder: Path) -> bool:
    return path is not None and Path(path).resolve().is_relative_to(folder.resolve())


def _file_matches(job: Job) -> bool:
    if not job.output_path or job.sha256 is None:
        return False
    path = Path(job.output_path)
    try:
        if path.stat().st_size != job.size:
            return False
    except OSError:
        return False
    return sha256_file(path) == job.sha256


def _duration(report: Any, poll: PollState, now: float) -> tuple[float, bool]:
    """How long a job took, and whether that is exact: RunComfy's own finished_at - created_at
    when it reports both (one clock), else the middle of the window in which it finished (after
    the last check that found it unfinished): recording the moment it was noticed would teach
    the schedule its own lateness."""
    noticed = now - poll.submitted_at
    created, finished = getattr(report, "created_at", None), getattr(report, "finished_at", None)
    if created is not None and finished is not None:
        seconds = (finished - created).total_seconds()
        if 0 <= seconds <= noticed + 5:  # sane against our own clock
            return seconds, True
    if poll.last_checked is None:
        return noticed, False
    return (poll.last_checked + now) / 2 - poll.submitted_at, False


def _api_message(error: BaseException) -> str:
    if isinstance(error, BatchrunError):
        return error.message
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def _timings(job: Job) -> dict[str, Any]:
    return {
        "created_at": job.created_at,
        "submitted_at": job.submitted_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


