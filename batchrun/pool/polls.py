"""Polling: one scheduler over a heap of due checks, one look at a job, and what its answer means
(a ``Runner`` mixin). When to look next is ``batchrun.polling``'s pure plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from batchrun.domain import Job
from batchrun.errors import (
    AuthError,
    ForbiddenError,
    InsufficientBalanceError,
    PermanentApiError,
    RequestNotFoundError,
    TransientApiError,
    message_of,
)
from batchrun.polling import LatencyModel, PollState
from batchrun.states import JobState
from batchrun.store import StaleJobError

if TYPE_CHECKING:  # pragma: no cover
    from batchrun.pool.runner import Runner

#: seconds between looks at a job reported completed without output (about a minute in all)
EMPTY_OUTPUT_WAITS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


@dataclass
class Tracked:
    """A job at RunComfy, as the scheduler sees it."""

    job_id: int
    key: str
    model: str
    request_id: str
    state: JobState
    poll: PollState  # submitted_at (monotonic) and checks so far
    resumed: bool = False  # submitted by an earlier run: its latency is unknown
    empty_outputs: int = 0
    via_status: bool = False  # /result refused while unfinished: check /status first
    failing_since: float | None = None  # monotonic time of the first of the failed checks in a row


class Polling:
    """Mixed into ``Runner``: the scheduler and each job's checks."""

    def _learned(self: Runner, model: str) -> dict[str, Any]:
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

    def _next_check(self: Runner, tracked: Tracked, now: float) -> float:
        """When to look at an unfinished job again: by the learned plan, or, for a job an earlier
        run submitted (its age is unknown, the plan's waits would be guesses), by plain backoff
        up to the cap."""
        if tracked.resumed:
            return self.schedule.next_due(tracked.poll, now)
        return self.schedule.next_due(tracked.poll, now, **self._learned(tracked.model))

    def _push(self: Runner, due: float, tracked: Tracked) -> None:
        self._queue.push(tracked.job_id, due)
        self._wake.set()

    async def _scheduler(self: Runner) -> None:
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

    async def _wait_for_wake(self: Runner) -> None:
        wake = self._wake
        await wake.wait()
        if self._wake is wake:
            self._wake = anyio.Event()

    async def _check(self: Runner, tracked: Tracked) -> Any:
        """One look at a job: ``/result`` (status and output in one answer), or, for a job whose
        ``/result`` refused while unfinished, ``/status`` and then ``/result`` once it is done."""
        if tracked.via_status:
            status = await self.client.status(tracked.request_id)
            if not status.is_terminal:
                return status
        return await self.client.result(tracked.request_id)

    async def _poll_one(self: Runner, tracked: Tracked) -> None:
        try:
            report = await self._check(tracked)
        except (RequestNotFoundError, ForbiddenError) as error:  # documented: this request is gone for us
            self._finish_at_runcomfy(tracked)
            why = "refuses to show" if isinstance(error, ForbiddenError) else "no longer knows"
            self._fail_tracked(tracked, f"RunComfy {why} request {tracked.request_id}: {message_of(error)}")
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
            # an undocumented refusal (a bare 404 or 403, an odd 4xx, an answer we cannot read):
            # the job is paid for and only a documented code says it is gone, so this is an
            # outage like a 5xx (an hour, then left as it is for the next run), looked at through
            # /status from now on (API.md documents /result as answering while unfinished, but
            # another implementation may refuse)
            tracked.via_status = True
            self._poll_later(tracked, error)
            return
        except (TransientApiError, httpx.TransportError) as error:
            self._poll_later(tracked, error)
            return
        tracked.failing_since = None
        self._on_report(tracked, report)

    def _poll_later(self: Runner, tracked: Tracked, error: BaseException) -> None:
        self.store.record_event(tracked.job_id, "poll_error", {"error": message_of(error)})
        now = self.clock.monotonic()
        if tracked.failing_since is None:
            tracked.failing_since = now
        if now - tracked.failing_since >= self.options.poll_give_up_seconds:
            self._leave_for_next_run(tracked, error, now - tracked.failing_since)
            return
        self._push(now + self.schedule.cap, tracked)

    def _leave_for_next_run(self: Runner, tracked: Tracked, error: BaseException, failing: float) -> None:
        """Stop checking a job whose checks have failed for ``poll_give_up_seconds``: it stays in
        its state (paid for, never failed for this), and the next run checks it again."""
        self.store.record_event(tracked.job_id, "checks_abandoned", {"error": message_of(error),
                                                                    "failing_seconds": round(failing)})
        self.progress.message(f"{tracked.key}: RunComfy's answers about it have failed for {failing / 60:.0f} min "
                              f"({message_of(error)}); left {tracked.state.value} for the next run")
        self._finish_at_runcomfy(tracked)
        self._finish_one()

    def _on_report(self: Runner, tracked: Tracked, report: Any) -> None:
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

    def _move_tracked(self: Runner, tracked: Tracked, old: JobState, new: JobState, move: Callable[[int], Job]) -> bool:
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

    def _finish_at_runcomfy(self: Runner, tracked: Tracked) -> None:
        """RunComfy is done with this job: its in-flight slot is free."""
        if self._tracked.pop(tracked.job_id, None) is not None:
            self.slots.release()

    def _fail_tracked(self: Runner, tracked: Tracked, error: str) -> None:
        try:
            job = self.store.mark_failed(tracked.job_id, error)
            self._moved(job, tracked.state, JobState.FAILED, error)
            self.summary.failures.append((job.key, error))
        except StaleJobError:
            pass
        self._finish_one()


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
