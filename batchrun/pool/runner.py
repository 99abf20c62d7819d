"""The ``Runner``: one campaign's run, from resume to the last download (see the package docstring)."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from anyio.abc import TaskGroup

from batchrun.api import RunComfyClient
from batchrun.clock import SYSTEM_CLOCK, Clock
from batchrun.download import Downloader
from batchrun.domain import Job
from batchrun.errors import AuthError
from batchrun.polling import LatencyModel, PollQueue, PollSchedule, PollState
from batchrun.pool.downloads import Downloading
from batchrun.pool.polls import Polling, Tracked
from batchrun.pool.submits import Submitting
from batchrun.runs import Progress, RunOptions, RunSummary, SilentProgress, UnknownSubmitPolicy
from batchrun.slots import Slots
from batchrun.states import JobState
from batchrun.store import StaleJobError, Store
from batchrun.store.retrying import RetryingStore

#: the states a runner takes over from a dead one (or from the previous run)
_TAKEN_OVER = (JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING, JobState.DOWNLOADING)


class Runner(Submitting, Polling, Downloading):
    """Runs one campaign's jobs to completion; see the package docstring."""

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
        self.campaign_id = campaign_id
        self.output_dir = output_dir
        self.client = client
        self.downloader = downloader
        self.options = options
        self.progress = progress or SilentProgress()
        # a database that fails for a moment (a restart, a deadlock, a long `plan`) is waited out
        self.store: Store = RetryingStore(store, on_retry=self.progress.message)  # type: ignore[assignment]
        self.clock = clock
        self.schedule = schedule or PollSchedule(lateness=options.poll_lateness)
        self.latencies: dict[str, LatencyModel] = {}  # learned per model id
        self.summary = RunSummary(campaign=campaign_name, output_dir=output_dir)
        self.slots = Slots(options.local_concurrency or options.concurrency, monotonic=clock.monotonic)
        self._queue = PollQueue()  # job id -> due time of its next check
        self._wake = anyio.Event()
        self._tracked: dict[int, Tracked] = {}
        self._active = 0  # jobs being polled, submitted or downloaded
        self._idle = anyio.Event()
        self._stop_submitting = False
        self._stopped = anyio.Event()  # set with _stop_submitting: wakes submits waiting to retry
        self._submitting_done = False
        self._download_send, self._download_receive = anyio.create_memory_object_stream[Job](math.inf)
        self._tg: TaskGroup | None = None
        self._post_lanes = anyio.CapacityLimiter(options.submit_parallelism)
        self._submitting_now = 0  # submit tasks alive (they may hand their job back to pending)
        self._posting = 0  # POSTs under way, between sending and their answer
        self._post_answered = anyio.Event()  # set (and replaced by the waiter) as each POST ends
        self._auth_stopping = False
        self._deferrals: dict[int, int] = {}  # job id -> submits that ran out of retries this run
        self._given_up: set[int] = set()  # jobs not to claim again this run
        self._later_downloads: dict[int, int] = {}  # job id -> downloads put off for later this run
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
            self._stopped.set()
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
                tracked = Tracked(job.id, job.key, job.model, job.request_id, job.state, PollState(now), resumed=True)
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

    # ------------------------------------------------------------------ bookkeeping

    async def _sleep_unless_stopped(self, seconds: float) -> None:
        """Wait ``seconds`` (before posting or downloading again), or less when the run stops
        submitting meanwhile."""
        async with anyio.create_task_group() as tg:

            async def wake_after(waiting: Callable[[], Awaitable[object]]) -> None:
                await waiting()
                tg.cancel_scope.cancel()

            tg.start_soon(wake_after, lambda: self.clock.sleep(seconds))
            tg.start_soon(wake_after, self._stopped.wait)

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
        """The token was refused: submit nothing more and stop (every state is already recorded).

        POSTs already under way may have created (billed) jobs: cutting them off would leave
        those jobs in doubt, so the run first waits (at most ``auth_stop_grace``) for their
        answers, which are recorded: a job RunComfy created is polled by the next run, one it
        refused goes back to pending. Meanwhile nothing new is sent."""
        if not self.summary.auth_failed:
            self.summary.auth_failed = True
            self.summary.stop_reason = f"{error.message}; the run stopped"
            self.progress.message(self.summary.stop_reason)
        self._stop_submitting = True
        self._stopped.set()
        self.slots.close()
        if self._tg is not None and not self._auth_stopping:
            self._auth_stopping = True
            self._tg.start_soon(self._stop_after_posts)

    async def _stop_after_posts(self) -> None:
        """Cancel the run once no POST is under way (or the grace has passed)."""
        with anyio.move_on_after(self.options.auth_stop_grace):
            while self._posting:
                self._post_answered = anyio.Event()
                await self._post_answered.wait()
        assert self._tg is not None
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
