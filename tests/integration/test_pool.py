"""The worker pool against the real simulator over HTTP on 127.0.0.1: what a run guarantees."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import anyio
import httpx
import pytest

from batchrun import planning
from batchrun.api import RunComfyClient
from batchrun.download import Downloader
from batchrun.pool import Runner, RunOptions, RunSummary, UnknownSubmitPolicy
from batchrun.retry import RetryPolicy
from batchrun.runs import SilentProgress
from batchrun.states import JobState
from batchrun.store import Store, open_store, resolve_db_url

I2V = "kling/kling-3.0/standard/image-to-video"
FAST_RETRY = RetryPolicy(max_attempts=10, base=0.005, cap=0.02, max_elapsed=30, retry_after_cap=0.02)


def write_manifest(folder: Path, jobs: int = 8, *, model: str = I2V, extra: str = "", name: str = "camp") -> Path:
    lines = [f"name: {name}", f"model: {model}", "output:", "  dir: out", "defaults:", "  duration: 3",
             "  start_image_url: https://example.com/start.png", "jobs:"]
    for index in range(jobs):
        lines.append(f"  - id: shot{index:03d}")
        lines.append(f"    prompt: a lighthouse at dusk, take {index}")
    path = folder / "campaign.yaml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


class Campaign:
    """A planned campaign plus helpers to run it against a simulator."""

    def __init__(self, manifest: Path, *, allow_unknown_model: bool = False) -> None:
        self.manifest = manifest
        self.loaded = planning.load(manifest, allow_unknown_model=allow_unknown_model)
        self.store: Store = open_store(resolve_db_url(None, manifest))
        self.report = planning.plan_campaign(self.loaded, self.store)
        self.output_dir = self.report.output_dir
        assert self.output_dir is not None

    def replan(self, **kwargs) -> None:
        self.loaded = planning.load(self.manifest, **kwargs)
        self.report = planning.plan_campaign(self.loaded, self.store)

    def run(self, simulator, *, token: str = "sim-token", **options) -> RunSummary:
        return self.run_keeping_runner(simulator, token=token, **options)[0]

    def run_keeping_runner(self, simulator, *, token: str = "sim-token", retry: RetryPolicy = FAST_RETRY,
                           transport=None, progress=None, **options) -> tuple[RunSummary, Runner]:
        """Run with the API client's ``retry`` and ``transport``; a ``progress`` with a ``runner``
        attribute is given the runner, so that it can react to the run (interrupt it, say)."""
        async def main() -> tuple[RunSummary, Runner]:
            async with RunComfyClient(simulator.base_url, token, retry=retry, transport=transport) as client, \
                    Downloader(retry=FAST_RETRY) as downloader:
                runner = Runner(
                    self.store,
                    campaign_id=self.report.campaign_id,
                    campaign_name=self.loaded.name,
                    output_dir=self.output_dir,
                    client=client,
                    downloader=downloader,
                    options=RunOptions(**options),
                    progress=progress,
                )
                if hasattr(progress, "runner"):
                    progress.runner = runner
                return await runner.run(), runner

        return anyio.run(main)

    def jobs(self, *states: JobState):
        return self.store.jobs_in_states(self.report.campaign_id, states or list(JobState), include_superseded=False)


@pytest.fixture
def campaign_factory(isolated_env: Path):
    made: list[Campaign] = []

    def make(jobs: int = 8, **kwargs) -> Campaign:
        allow = kwargs.pop("allow_unknown_model", False)
        campaign = Campaign(write_manifest(isolated_env, jobs, **kwargs), allow_unknown_model=allow)
        made.append(campaign)
        return campaign

    yield make
    for campaign in made:
        campaign.store.close()


def test_every_job_ends_with_its_verified_file_and_sidecar(campaign_factory, make_simulator):
    """A run downloads every video, byte-identical to what RunComfy served, with a sidecar beside it."""
    simulator = make_simulator()
    campaign = campaign_factory(10)
    summary = campaign.run(simulator, concurrency=4)
    assert summary.exit_code == 0
    assert summary.counts[JobState.DONE] == 10
    served = simulator.served_files()
    for job in campaign.jobs():
        path = Path(job.output_path)
        assert path.parent == campaign.output_dir and path.name == f"{job.key.rsplit('-t', 1)[0]}.mp4"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == job.sha256 == served[job.result_urls[0]]
        sidecar = json.loads(path.with_name(path.name + ".json").read_text())
        assert sidecar["job_key"] == job.key and sidecar["request_id"] == job.request_id
        assert sidecar["sha256"] == digest and sidecar["input"] == dict(job.input)
    assert not list(campaign.output_dir.rglob("*.part"))


def test_a_partial_download_of_something_else_is_never_spliced_into_a_video(campaign_factory, make_simulator):
    """A `.part` under a job's file name that this job did not start (another campaign's in a
    shared folder, an older revision's, an older batchrun's) is thrown away, not resumed: every
    video is byte-identical to what RunComfy served."""
    simulator = make_simulator()
    campaign = campaign_factory(2)
    campaign.output_dir.mkdir(parents=True, exist_ok=True)
    (campaign.output_dir / "shot000.mp4.part").write_bytes(b"FOREIGN!")
    (campaign.output_dir / "shot001.mp4.part").write_bytes(b"ELSEWHERE")
    (campaign.output_dir / "shot001.mp4.part.json").write_text('{"source": "campaign 9 job x request r file 0"}')
    assert campaign.run(simulator).exit_code == 0
    served = simulator.served_files()
    for job in campaign.jobs():
        assert hashlib.sha256(Path(job.output_path).read_bytes()).hexdigest() == served[job.result_urls[0]]
    assert sorted(p.name for p in campaign.output_dir.iterdir()) == [
        "shot000.mp4", "shot000.mp4.json", "shot001.mp4", "shot001.mp4.json"]


def test_in_flight_cap_is_never_exceeded_at_runcomfy(campaign_factory, make_simulator):
    """At most --concurrency jobs are submitted-and-unfinished at RunComfy, as the server sees it."""
    simulator = make_simulator()
    campaign = campaign_factory(24)
    summary = campaign.run(simulator, concurrency=3)
    assert summary.counts[JobState.DONE] == 24
    stats = simulator.stats()
    assert stats.jobs_created == 24
    assert 1 <= stats.max_unfinished <= 3


def test_every_transition_is_recorded_in_order(campaign_factory, make_simulator):
    """A job's history reads back pending -> submitting -> queued -> ... -> done, with times."""
    simulator = make_simulator()
    campaign = campaign_factory(1)
    campaign.run(simulator)
    job = campaign.jobs()[0]
    moves = [(e.from_state, e.to_state) for e in campaign.store.history(job.id) if e.kind == "transition"]
    states = [JobState.PENDING] + [new for _, new in moves]
    assert states[:3] == [JobState.PENDING, JobState.SUBMITTING, JobState.QUEUED]
    assert states[-2:] == [JobState.DOWNLOADING, JobState.DONE]
    assert all(e.at is not None for e in campaign.store.history(job.id))


def test_transient_faults_are_retried_until_every_job_is_done(campaign_factory, make_simulator):
    """5xx, 429 and 200-with-error_code answers and truncated downloads cost retries, not jobs."""
    from batchrun.sim import Faults

    simulator = make_simulator(
        seed=7, faults=Faults(server_error=0.15, rate_limit=0.1, error_200=0.1, truncated_download=0.3, retry_after=0)
    )
    campaign = campaign_factory(16)
    summary = campaign.run(simulator, concurrency=6)
    assert summary.counts[JobState.DONE] == 16, summary
    assert sum(simulator.stats().faults_injected.values()) > 0
    assert max(simulator.stats().submissions_by_input.values()) == 1
    served = simulator.served_files()
    for job in campaign.jobs():
        assert hashlib.sha256(Path(job.output_path).read_bytes()).hexdigest() == served[job.result_urls[0]]


@pytest.mark.parametrize("error_code", [None, 500001, 400002])
def test_failed_generations_record_the_servers_error(campaign_factory, make_simulator, error_code):
    """A generation that fails at RunComfy ends `failed` with RunComfy's message; the run exits 1.
    An `error_code` beside `status: failed` does not turn the job's outcome into a request error
    to retry (the run would poll it forever) or stop the run."""
    simulator = make_simulator(failure_rate=1.0, failure_error_code=error_code)
    campaign = campaign_factory(3)
    summary = campaign.run(simulator)
    assert summary.exit_code == 1 and summary.stop_reason is None
    failed = campaign.jobs(JobState.FAILED)
    assert len(failed) == 3 and all(job.error for job in failed)
    assert len(summary.failures) == 3
    assert simulator.stats().requests["result"] <= 3 * 4  # a few checks each, no retries


class _ChecksFail(httpx.AsyncBaseTransport):
    """Every status and result request answers 503; the rest reaches the simulator."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request):
        if "/v1/requests/" in request.url.path:
            return httpx.Response(503, text="Service Unavailable")
        return await self.inner.handle_async_request(request)


def test_a_job_whose_checks_keep_failing_is_left_for_the_next_run(campaign_factory, make_simulator):
    """When RunComfy cannot say how a job is doing for `poll_give_up_seconds`, the run ends
    anyway (exit 1) with the job left as it is, never failed: the next run collects it."""
    simulator = make_simulator()
    campaign = campaign_factory(2)
    progress = _Messages()
    summary = campaign.run(simulator, transport=_ChecksFail(), progress=progress, poll_give_up_seconds=0)
    assert summary.exit_code == 1 and simulator.stats().jobs_created == 2
    assert all(job.state is JobState.QUEUED for job in campaign.jobs())
    assert sum("for the next run" in text for text in progress.texts) == 2
    assert campaign.run(simulator).exit_code == 0 and simulator.stats().jobs_created == 2


class _Messages(SilentProgress):
    def __init__(self) -> None:
        self.texts: list[str] = []

    def message(self, text: str) -> None:
        self.texts.append(text)


def test_unknown_model_fails_only_that_job_without_retry(campaign_factory, make_simulator):
    """A permanent error (400001) fails the job at once with the server's message; others finish."""
    simulator = make_simulator()
    extra = "  - id: odd\n    model: kling/kling-9.9/pro/text-to-video\n    prompt: x\n"
    campaign = campaign_factory(2, extra=extra, allow_unknown_model=True)
    summary = campaign.run(simulator)
    assert summary.counts[JobState.DONE] == 2 and summary.counts[JobState.FAILED] == 1
    odd = campaign.store.get_job_by_key(campaign.report.campaign_id, "odd-t1")
    assert odd.state is JobState.FAILED and "model" in odd.error.lower()
    assert simulator.stats().requests["submit"] == 3


def test_rejected_token_stops_the_run_before_anything_is_created(campaign_factory, make_simulator):
    """An auth error stops the whole run at once (exit 2) and leaves every job resumable."""
    simulator = make_simulator()
    campaign = campaign_factory(5)
    summary = campaign.run(simulator, token="wrong-token")
    assert summary.exit_code == 2 and summary.auth_failed
    assert simulator.stats().jobs_created == 0
    assert {job.state for job in campaign.jobs()} == {JobState.PENDING}


def test_a_token_found_inside_every_request_id_changes_nothing(campaign_factory, make_simulator):
    """A test token such as `4` (every id the simulator gives, a UUID4, holds a `4`): every job is
    submitted once and done, polled and recorded under the id RunComfy gave, never a redacted one."""
    simulator = make_simulator(token="4")
    campaign = campaign_factory(3)
    summary = campaign.run(simulator, token="4")
    assert summary.exit_code == 0 and summary.counts[JobState.DONE] == 3
    ids = {job.request_id for job in campaign.jobs()}
    assert len(ids) == 3 and all("4" in rid and "redacted" not in rid for rid in ids)
    assert simulator.stats().requests["submit"] == 3


def test_insufficient_balance_stops_submitting_but_finishes_jobs_in_flight(campaign_factory, make_simulator):
    """400002 stops new submissions for the run; what RunComfy already has is still collected."""
    simulator = make_simulator(balance=3.0)
    campaign = campaign_factory(8)
    summary = campaign.run(simulator, concurrency=2)
    created = simulator.stats().jobs_created
    assert 0 < created < 8
    assert summary.counts[JobState.DONE] == created
    assert summary.counts[JobState.PENDING] == 8 - created
    assert "balance" in (summary.stop_reason or "")
    assert summary.exit_code == 1


def test_lost_submit_answers_are_held_not_resubmitted_by_default(campaign_factory, make_simulator):
    """A submit whose answer was lost is never resubmitted silently; resubmit is an explicit choice."""
    from batchrun.sim import Faults

    simulator = make_simulator(seed=3, faults=Faults(lost_submit=1.0))
    campaign = campaign_factory(2)
    summary = campaign.run(simulator)
    assert sorted(summary.held) == sorted(job.key for job in campaign.jobs())
    assert {job.state for job in campaign.jobs()} == {JobState.SUBMITTING}
    assert simulator.stats().jobs_created == 2  # RunComfy has them, we do not know their ids
    assert summary.exit_code == 1

    again = campaign.run(simulator)  # the same command again: still held, nothing sent
    assert simulator.stats().jobs_created == 2 and len(again.held) == 2

    simulator.set_faults(Faults())
    final = campaign.run(simulator, unknown_submit=UnknownSubmitPolicy.RESUBMIT)
    assert final.counts[JobState.DONE] == 2
    duplicates = sum(n - 1 for n in simulator.stats().submissions_by_input.values())
    assert duplicates == 2  # exactly the two lost answers were paid twice, as the policy warns


def test_resume_polls_submitted_jobs_instead_of_resubmitting(campaign_factory, make_simulator):
    """A job that has a request id is polled after a restart, never submitted again."""
    from batchrun.sim import Latency

    simulator = make_simulator(latency=Latency(kind="manual"))
    campaign = campaign_factory(3)

    async def submit_and_crash() -> None:
        # submit all three like a run would, then "crash" before any result is seen
        async with RunComfyClient(simulator.base_url, "sim-token", retry=FAST_RETRY) as client:
            for job in campaign.jobs(JobState.PENDING):
                campaign.store.begin_submit(job.id)
                submission = await client.submit(job.model, dict(job.input))
                campaign.store.record_submission(job.id, submission.request_id)

    anyio.run(submit_and_crash)
    simulator.finish()
    summary = campaign.run(simulator)
    assert summary.counts[JobState.DONE] == 3
    assert simulator.stats().jobs_created == 3
    assert summary.submitted == 0


def test_missing_or_corrupt_files_of_done_jobs_are_downloaded_again(campaign_factory, make_simulator):
    """On resume a done job whose file was deleted or altered is fetched again; intact ones are skipped."""
    simulator = make_simulator()
    campaign = campaign_factory(3)
    campaign.run(simulator)
    first, second, third = sorted(campaign.jobs(), key=lambda job: job.key)
    Path(first.output_path).unlink()
    Path(second.output_path).write_bytes(b"not a video")
    downloads_before = simulator.stats().requests["file"]
    summary = campaign.run(simulator)
    assert summary.counts[JobState.DONE] == 3
    assert simulator.stats().requests["file"] == downloads_before + 2
    assert simulator.stats().jobs_created == 3
    for job in campaign.jobs():
        assert hashlib.sha256(Path(job.output_path).read_bytes()).hexdigest() == job.sha256


def test_edited_job_keeps_the_old_revisions_file(campaign_factory, make_simulator, isolated_env):
    """Editing a done job's prompt runs the new version and keeps the old video beside it."""
    simulator = make_simulator()
    campaign = campaign_factory(2)
    campaign.run(simulator)
    old = campaign.store.get_job_by_key(campaign.report.campaign_id, "shot000-t1")
    text = campaign.manifest.read_text().replace("take 0", "take 0, in the rain")
    campaign.manifest.write_text(text)
    campaign.replan()
    assert campaign.report.counts.changed == 1
    summary = campaign.run(simulator)
    assert summary.counts[JobState.DONE] == 2
    new = campaign.store.get_job_by_key(campaign.report.campaign_id, "shot000-t1")
    assert new.revision == 2 and Path(new.output_path).name == "shot000.mp4"
    kept = campaign.store.get_job(old.id)
    assert kept.output_path != new.output_path and Path(kept.output_path).exists()
    assert hashlib.sha256(Path(kept.output_path).read_bytes()).hexdigest() == old.sha256


def test_budget_caps_the_estimated_cost_of_submitted_jobs(campaign_factory, make_simulator):
    """With a budget, submissions stop before their estimated cost would pass it; the rest stay pending."""
    simulator = make_simulator()
    campaign = campaign_factory(6)  # standard image-to-video, 3 s with audio: 3 x $0.126 = $0.378 each
    summary = campaign.run(simulator, budget=1.0)
    assert simulator.stats().jobs_created == 2
    assert summary.counts[JobState.DONE] == 2 and summary.counts[JobState.PENDING] == 4
    assert "budget reached" in summary.stop_reason
    assert campaign.store.committed_cost(campaign.report.campaign_id) <= 1.0
    again = campaign.run(simulator, budget=1.0)  # the spend of the first run still counts
    assert simulator.stats().jobs_created == 2 and again.counts[JobState.PENDING] == 4


def test_an_extra_output_file_that_is_gone_does_not_fail_the_paid_video(campaign_factory, make_simulator):
    """The video arrives; a thumbnail URL that answers 404 is recorded and skipped, the job is done."""
    simulator = make_simulator(extra_output_url="/files/gone-thumbnail.png")
    campaign = campaign_factory(2)
    summary = campaign.run(simulator)
    assert summary.counts[JobState.DONE] == 2 and summary.exit_code == 0
    for job in campaign.jobs(JobState.DONE):
        assert Path(job.output_path).stat().st_size == job.size > 0
        assert "extra_file_skipped" in [event.kind for event in campaign.store.history(job.id)]
    assert simulator.stats().jobs_created == 2  # nothing paid twice


def test_an_expired_result_url_is_asked_for_again_before_the_job_fails(campaign_factory, make_simulator):
    """A 403 on the first result URL: RunComfy is asked for fresh URLs, the video downloads, no resubmit."""
    simulator = make_simulator(expire_first_urls=True)
    campaign = campaign_factory(2)
    summary = campaign.run(simulator)
    assert summary.counts[JobState.DONE] == 2 and summary.exit_code == 0
    assert simulator.stats().jobs_created == 2
    for job in campaign.jobs(JobState.DONE):
        kinds = [event.kind for event in campaign.store.history(job.id)]
        assert "result_urls_refreshed" in kinds and Path(job.output_path).exists()


def test_validation_rejected_by_runcomfy_fails_only_that_job_with_the_detail(campaign_factory, make_simulator):
    """A 422 from RunComfy fails that job with the server's detail; the others finish."""
    simulator = make_simulator(reject_prompts_containing="take 1")
    campaign = campaign_factory(3)
    summary = campaign.run(simulator)
    assert summary.counts[JobState.DONE] == 2 and summary.counts[JobState.FAILED] == 1
    (failed,) = campaign.jobs(JobState.FAILED)
    assert failed.key == "shot001-t1"
    assert "content filter" in failed.error and "prompt" in failed.error
    assert simulator.stats().requests["submit"] == 3  # not retried


def test_result_files_over_the_size_cap_are_refused(campaign_factory, make_simulator):
    """A result file larger than the cap fails its job and leaves no partial file behind."""
    simulator = make_simulator()
    campaign = campaign_factory(1)

    async def main():
        async with RunComfyClient(simulator.base_url, "sim-token", retry=FAST_RETRY) as client, Downloader(
            retry=FAST_RETRY, max_bytes=1000
        ) as downloader:
            runner = Runner(campaign.store, campaign_id=campaign.report.campaign_id, campaign_name="camp",
                            output_dir=campaign.output_dir, client=client, downloader=downloader)
            return await runner.run()

    summary = anyio.run(main)
    (job,) = campaign.jobs()
    assert job.state is JobState.FAILED and "download failed" in job.error
    assert summary.exit_code == 1
    assert not [p for p in campaign.output_dir.rglob("*") if p.is_file()]


def test_poll_lateness_sets_the_schedule_the_runner_polls_by(campaign_factory, make_simulator):
    """--poll-lateness becomes the Runner's poll schedule; a lax setting still finishes every job."""
    campaign = campaign_factory(4)
    runner = Runner(campaign.store, campaign_id=campaign.report.campaign_id, campaign_name="camp",
                    output_dir=campaign.output_dir, client=None, downloader=None,  # type: ignore[arg-type]
                    options=RunOptions(poll_lateness=0.2))
    assert runner.schedule.lateness == 0.2
    summary = campaign.run(make_simulator(), poll_lateness=0.5)
    assert summary.counts[JobState.DONE] == 4


def test_jobs_of_an_earlier_run_are_polled_by_backoff_not_by_the_learned_plan(campaign_factory):
    """A resumed job's age is unknown: it is looked at again within the cap, not at the plan's long waits."""
    from batchrun.polling import LatencyModel, PollState
    from batchrun.pool import Tracked

    campaign = campaign_factory(1)
    runner = Runner(campaign.store, campaign_id=campaign.report.campaign_id, campaign_name="camp",
                    output_dir=campaign.output_dir, client=None, downloader=None,  # type: ignore[arg-type]
                    options=RunOptions())
    learned = runner.latencies.setdefault(I2V, LatencyModel())
    for seconds in range(150, 200):  # this model's jobs take minutes
        learned.record(float(seconds))
    fresh = Tracked(1, "a", I2V, "r1", JobState.QUEUED, PollState(1000.0).checked(1000.5))
    resumed = Tracked(2, "b", I2V, "r2", JobState.QUEUED, PollState(1000.0).checked(1000.5), resumed=True)
    # a job this run submitted 0.5 s ago follows the plan (the earliest finish is 150 s away, so
    # its first planned check is the cap after the submit); one found at start may be about to
    # finish: plain backoff from 0.5 s
    assert runner._next_check(fresh, 1000.5) == pytest.approx(1000.0 + runner.schedule.cap)
    assert runner._next_check(resumed, 1000.5) < 1000.5 + 1.0


@pytest.mark.parametrize("variant, exact", [("standard", True), ("alt", False)])
def test_durations_are_exact_only_when_runcomfy_reports_its_timestamps(campaign_factory, make_simulator, variant, exact):
    """With created_at and finished_at the learned durations are RunComfy's own, and only then may the
    poll plan wait past the cap before jobs can be done; without them they are inferred from the checks."""
    campaign = campaign_factory(6)
    summary, runner = campaign.run_keeping_runner(make_simulator(status_variant=variant))
    assert summary.counts[JobState.DONE] == 6
    learned = runner.latencies[I2V]
    assert learned.samples == 6
    assert learned.exact is exact
    assert runner._learned(I2V)["patient"] is exact


class _OnRetry(SilentProgress):
    """Calls ``react`` (with the runner) when a submit is about to wait for its next try."""

    def __init__(self, react) -> None:
        self.react, self.runner, self.seen = react, None, []

    def message(self, text: str) -> None:
        if "trying again in" in text:
            self.seen.append(text)
            self.react(self.runner)


def test_a_refused_submit_waits_as_pending_and_a_ctrl_c_stops_the_next_post(campaign_factory, make_simulator):
    """A 429 proves nothing was created: while waiting out Retry-After the job is `pending` again
    (a kill -9 then leaves nothing in doubt), its cost is refunded to the budget, and a Ctrl-C
    during the wait means no second POST."""
    from batchrun.sim import Faults

    simulator = make_simulator(faults=Faults(rate_limit=1.0, retry_after=3600))
    campaign = campaign_factory(1)
    [job] = campaign.jobs()
    seen_states = []

    def react(runner) -> None:
        seen_states.append(campaign.store.get_job(job.id).state)
        seen_states.append(campaign.store.committed_cost(campaign.report.campaign_id))
        runner.interrupt()

    progress = _OnRetry(react)
    patient = RetryPolicy(max_attempts=6, base=3600, cap=3600, jitter=False, retry_after_cap=3600, max_elapsed=None)

    summary = campaign.run(simulator, retry=patient, progress=progress, budget=100.0)
    assert len(progress.seen) == 1 and "3600s" in progress.seen[0]
    assert seen_states == [JobState.PENDING, 0.0]
    assert simulator.stats().requests["submit"] == 1
    assert summary.interrupted and campaign.jobs(JobState.PENDING) == [campaign.store.get_job(job.id)]
    assert campaign.store.committed_cost(campaign.report.campaign_id) == 0.0
    kinds = [e.kind for e in campaign.store.history(job.id)]
    assert "submit_retry" in kinds


def test_a_refused_submit_is_posted_again_after_the_wait_and_charged_once(campaign_factory, make_simulator):
    """Certain refusals (5xx, 429) are retried by the run itself; the job is paid for once."""
    from batchrun.sim import Faults

    simulator = make_simulator(seed=3, faults=Faults(server_error=0.5, retry_after=0))
    campaign = campaign_factory(6)
    summary = campaign.run(simulator, concurrency=6, budget=100.0)
    assert summary.counts[JobState.DONE] == 6, summary
    assert simulator.stats().requests["submit"] > 6  # some were refused and posted again
    assert simulator.stats().jobs_created == 6
    per_job = campaign.jobs()[0].estimated_cost
    assert campaign.store.committed_cost(campaign.report.campaign_id) == pytest.approx(6 * per_job)


def test_a_429_while_jobs_run_is_a_concurrency_limit_not_a_failed_submit(campaign_factory, make_simulator):
    """A service that caps jobs in flight with 429 (none is published): the run keeps as many in
    flight as it accepts and submits the rest as those finish, instead of retrying each refused
    job until it is given up; every job is done in one run and paid for once."""
    simulator = make_simulator(in_flight_limit=3)
    campaign = campaign_factory(12)
    progress = _Messages()
    patient = RetryPolicy(max_attempts=2, base=0.001, cap=0.001, max_elapsed=1, retry_after_cap=0.001)
    summary = campaign.run(simulator, retry=patient, progress=progress, concurrency=8)
    assert summary.exit_code == 0 and summary.counts[JobState.DONE] == 12
    stats = simulator.stats()
    assert stats.jobs_created == 12 and max(stats.submissions_by_input.values()) == 1
    assert stats.requests["submit"] - stats.jobs_created < 8  # refused only while learning the limit
    assert any("at most" in text and "429" in text for text in progress.texts)
    throttled = [e for job in campaign.jobs() for e in campaign.store.history(job.id) if e.kind == "submit_throttled"]
    assert throttled and all(e.detail["in_flight"] >= 1 for e in throttled)


class _SecondSubmitRefused(httpx.AsyncBaseTransport):
    """The second submit answers a bare 429 (a rate limit, no Retry-After); the rest reaches the simulator."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.posts = 0

    async def handle_async_request(self, request):
        if request.method == "POST" and "/v1/models/" in request.url.path:
            self.posts += 1
            if self.posts == 2:
                return httpx.Response(429, json={"error_message": "slow down"})
        return await self.inner.handle_async_request(request)


def test_one_429_never_holds_the_run_behind_a_long_job(campaign_factory, make_simulator):
    """One refusal while a single long job runs lowers the cap to that one job, but only for the
    hold: then slots open again, without waiting for the long job, while RunComfy accepts."""
    import threading

    from batchrun.sim import Latency

    simulator = make_simulator(latency="manual")
    campaign = campaign_factory(8)
    done: dict[str, RunSummary] = {}
    run = threading.Thread(target=lambda: done.setdefault("summary", campaign.run(
        simulator, transport=_SecondSubmitRefused(), concurrency=4, submit_parallelism=1,
        throttle_hold_seconds=0.05)))
    run.start()
    try:
        assert simulator.wait_for_jobs(1, timeout=30)
        simulator.set_latency(Latency(kind="fixed", value=0.02))  # every later job is quick
        assert simulator.wait_for_jobs(8, timeout=30)  # all of them while the first one still runs
    finally:
        simulator.finish()
        run.join(60)
    assert done["summary"].exit_code == 0 and simulator.stats().jobs_created == 8


@pytest.mark.parametrize("blank", ["html", "empty"])
def test_a_blank_answer_from_the_file_host_is_never_a_done_job(campaign_factory, make_simulator, blank):
    """A 200 carrying a web page or nothing is not the video: no file is written, the job stays
    `downloading` (paid for, not failed) and the next run downloads the real file."""
    simulator = make_simulator(blank_files=blank)
    campaign = campaign_factory(2)
    first = campaign.run(simulator, download_retry_delays=())
    assert first.exit_code != 0
    assert first.counts[JobState.DOWNLOADING] == 2 and first.counts[JobState.DONE] == 0
    assert not [p for p in campaign.output_dir.rglob("*") if p.is_file()]
    simulator.set_blank_files(None)
    second = campaign.run(simulator)
    assert second.exit_code == 0 and second.counts[JobState.DONE] == 2
    assert simulator.stats().jobs_created == 2
    served = simulator.served_files()
    for job in campaign.jobs():
        assert hashlib.sha256(Path(job.output_path).read_bytes()).hexdigest() == served[job.result_urls[0]]


def test_an_output_without_a_video_is_kept_under_the_images_own_name(campaign_factory, make_simulator):
    """RunComfy's output may hold only images: the file keeps its .png name, never `<id>.mp4`."""
    simulator = make_simulator(image_only_output=True)
    campaign = campaign_factory(1)
    summary = campaign.run(simulator)
    [job] = campaign.jobs()
    assert summary.counts[JobState.DONE] == 1
    assert Path(job.output_path).name == "shot000.png"
    assert "no_video_in_output" in [e.kind for e in campaign.store.history(job.id)]


def test_a_renamed_file_whose_move_was_not_recorded_is_found_not_downloaded_again(campaign_factory, make_simulator):
    """A crash between moving a renamed job's file and recording it: the next run finds the file
    under the new name (same size and sha256) and records it, without fetching it again."""
    simulator = make_simulator()
    campaign = campaign_factory(1)
    campaign.run(simulator)
    [job] = campaign.jobs()
    spec = next(iter(campaign.loaded.jobs()))
    renamed = dataclasses.replace(spec, output_name="renamed.mp4")
    campaign.store.apply_plan(campaign.report.campaign_id, [renamed])  # the plan, without its file moves
    Path(job.output_path).rename(campaign.output_dir / "renamed.mp4")
    files_before = simulator.stats().requests["file"]
    summary = campaign.run(simulator)
    assert summary.exit_code == 0 and simulator.stats().requests["file"] == files_before
    assert campaign.store.get_job(job.id).output_path == str(campaign.output_dir / "renamed.mp4")


def test_a_download_that_outlived_its_retries_is_tried_again_later_in_the_same_run(campaign_factory, make_simulator):
    """A file host that is down for a while (here: answering with a web page) does not end an
    overnight run with unfinished jobs: the download is tried again after a pause."""
    simulator = make_simulator(blank_files="html")
    campaign = campaign_factory(1)
    progress = _OnRetry(lambda runner: simulator.set_blank_files(None))

    summary = campaign.run(simulator, progress=progress, download_retry_delays=(0.0,))
    assert len(progress.seen) == 1 and "web page" in progress.seen[0]
    assert summary.exit_code == 0 and summary.counts[JobState.DONE] == 1


def test_the_same_file_listed_under_two_urls_is_kept_once(campaign_factory, make_simulator):
    """An output that repeats its video under another signature (`video` and `videos`) leaves one
    file, not `shot000.mp4` plus an identical `shot000~2.mp4`; the repeat is recorded."""
    simulator = make_simulator(repeated_video_url=True)
    campaign = campaign_factory(1)
    summary = campaign.run(simulator)
    [job] = campaign.jobs()
    assert summary.counts[JobState.DONE] == 1 and len(job.result_urls) == 2
    assert sorted(p.name for p in campaign.output_dir.iterdir()) == ["shot000.mp4", "shot000.mp4.json"]
    skipped = [e.detail for e in campaign.store.history(job.id) if e.kind == "extra_file_skipped"]
    assert skipped == [{"url": job.result_urls[1], "error": "same file as an earlier URL"}]


def test_a_file_missing_moments_after_the_job_finished_is_fetched_later_not_failed(campaign_factory, make_simulator):
    """A file host that answers 404 right after RunComfy said `completed` (it has not caught up)
    does not fail a paid-for job: the download is tried again after a pause and the job ends done."""
    simulator = make_simulator(blank_files="missing")
    campaign = campaign_factory(1)
    progress = _OnRetry(lambda runner: simulator.set_blank_files(None))

    summary = campaign.run(simulator, progress=progress, download_retry_delays=(0.0,))
    assert len(progress.seen) == 1 and "HTTP 404" in progress.seen[0], progress.seen
    assert summary.exit_code == 0 and summary.counts[JobState.DONE] == 1
    assert simulator.stats().jobs_created == 1


def test_a_file_missing_long_after_the_job_finished_fails_the_job(campaign_factory, make_simulator):
    """Past the grace (results are deleted after days), a 404 that a fresh /result does not cure
    is a lost file: the job fails at once with that reason instead of waiting in `downloading`."""
    simulator = make_simulator(blank_files="missing")
    campaign = campaign_factory(1)
    summary = campaign.run(simulator, missing_file_grace=0.0, download_retry_delays=(3600.0,))
    [job] = campaign.jobs()
    assert summary.counts[JobState.FAILED] == 1
    assert job.error == "download failed: result expired or missing (HTTP 404)"


def test_a_ctrl_c_while_a_download_waits_to_be_tried_again_ends_the_run_at_once(campaign_factory, make_simulator):
    """The first Ctrl-C does not sit out the pause: the job stays `downloading` for the next run."""
    simulator = make_simulator(blank_files="empty")
    campaign = campaign_factory(1)
    progress = _OnRetry(lambda runner: runner.interrupt())

    summary = campaign.run(simulator, progress=progress, download_retry_delays=(3600.0,))
    assert summary.interrupted and summary.counts[JobState.DOWNLOADING] == 1


class _SlowFirstPostThen401(httpx.AsyncBaseTransport):
    """The first POST reaches RunComfy (the job is created) and its answer never comes; the
    second POST, sent once the first was delivered, is refused with 401."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.delivered = anyio.Event()
        self.first_taken = False

    async def handle_async_request(self, request):
        if request.method != "POST" or "/v1/models/" not in request.url.path:
            return await self.inner.handle_async_request(request)
        if not self.first_taken:
            self.first_taken = True
            response = await self.inner.handle_async_request(request)
            await response.aread()
            self.delivered.set()
            await anyio.Event().wait()  # the answer is lost until the run stops
        await self.delivered.wait()
        return httpx.Response(401, json={"error_code": 401001, "error_message": "token revoked"})


def test_an_auth_stop_keeps_a_post_without_answer_in_doubt_and_charged(campaign_factory, make_simulator):
    """A 401 stops the run while another POST is under way and never answered: that POST may
    have created a job, so after the grace it stays `submitting` (held, never resubmitted
    silently) and its cost stays committed; the refused one is pending, its cost given back."""
    simulator = make_simulator()
    campaign = campaign_factory(2)
    cid = campaign.report.campaign_id
    per_job = campaign.jobs()[0].estimated_cost

    summary = campaign.run(simulator, transport=_SlowFirstPostThen401(), budget=10 * per_job, concurrency=2,
                           submit_parallelism=2, auth_stop_grace=0.2)
    assert summary.auth_failed and simulator.stats().jobs_created == 1
    assert campaign.store.committed_cost(cid) == pytest.approx(per_job)
    assert sorted(job.state for job in campaign.jobs()) == [JobState.PENDING, JobState.SUBMITTING]


class _FirstPostAnsweredAfterA401(httpx.AsyncBaseTransport, SilentProgress):
    """The first POST creates its job; the second is refused with 401; only once the run has
    said it stops (it is also the run's progress) does the first POST's (good) answer arrive."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.created, self.stopping = anyio.Event(), anyio.Event()
        self.posts = 0

    def message(self, text: str) -> None:
        if "the run stopped" in text:
            self.stopping.set()

    async def handle_async_request(self, request):
        if request.method != "POST" or "/v1/models/" not in request.url.path:
            return await self.inner.handle_async_request(request)
        self.posts += 1
        if self.posts == 1:
            response = await self.inner.handle_async_request(request)
            await response.aread()
            self.created.set()
            await self.stopping.wait()
            await anyio.lowlevel.checkpoint()  # where a run that cut POSTs off would cancel this one
            return response
        await self.created.wait()
        return httpx.Response(401, json={"error_code": 401001, "error_message": "token revoked"})


def test_an_auth_stop_waits_for_the_answers_of_posts_under_way(campaign_factory, make_simulator):
    """A 401 does not cut off a POST under way: its answer is recorded, so the next run (with a
    good token) polls that job instead of paying for it again."""
    simulator = make_simulator()
    campaign = campaign_factory(2)
    both = _FirstPostAnsweredAfterA401()
    summary = campaign.run(simulator, transport=both, progress=both, concurrency=2, submit_parallelism=2)
    assert summary.auth_failed and simulator.stats().jobs_created == 1
    assert sorted(job.state for job in campaign.jobs()) == [JobState.PENDING, JobState.QUEUED]
    assert campaign.run(simulator).exit_code == 0
    assert simulator.stats().jobs_created == 2 and simulator.stats().duplicates() == 0


class _AnswerAfter(httpx.AsyncBaseTransport):
    """Submits reach the simulator; ``meanwhile`` runs before each submit's answer is handed back."""

    def __init__(self, meanwhile) -> None:
        self.inner, self.meanwhile = httpx.AsyncHTTPTransport(), meanwhile

    async def handle_async_request(self, request):
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and "/v1/models/" in request.url.path:
            await response.aread()
            self.meanwhile()
        return response


def test_a_submit_answer_that_comes_after_another_runner_gave_up_on_the_job_is_kept(campaign_factory, make_simulator):
    """A runner frozen past its lease gets its POST's answer after another runner failed the job
    (the `fail` policy): no crash; the request id RunComfy gave is recorded in the job's events."""
    simulator = make_simulator()
    campaign = campaign_factory(1)
    [job] = campaign.jobs()
    progress = _Messages()
    summary = campaign.run(simulator, transport=_AnswerAfter(lambda: campaign.store.mark_failed(job.id, "given up")),
                           progress=progress)
    assert summary.exit_code == 1 and campaign.jobs()[0].state is JobState.FAILED
    [late] = [e for e in campaign.store.history(job.id) if e.kind == "late_submission_answer"]
    assert late.detail["request_id"] and late.detail["state_now"] == "failed"
    assert any("another runner had meanwhile made it failed" in text for text in progress.texts)


def test_a_sidecar_that_cannot_be_written_stops_submitting_without_a_crash(campaign_factory, make_simulator):
    """The video fitted but its sidecar cannot be written (disk full, or here a folder squatting
    on its temporary name): no traceback, no new submits, the job stays `downloading`; the next
    run, once the disk is fixed, finishes it without paying again."""
    simulator = make_simulator()
    campaign = campaign_factory(1)
    squatter = campaign.output_dir / "shot000.mp4.json.part"
    squatter.mkdir(parents=True)
    summary = campaign.run(simulator)
    assert summary.exit_code == 1 and "cannot write shot000.mp4" in (summary.stop_reason or "")
    assert campaign.jobs()[0].state is JobState.DOWNLOADING
    squatter.rmdir()
    assert campaign.run(simulator).exit_code == 0 and simulator.stats().jobs_created == 1
    assert json.loads((campaign.output_dir / "shot000.mp4.json").read_text())["job_key"] == campaign.jobs()[0].key


def _rename_all(campaign, names: dict[str, str]) -> list[str]:
    """Plan the campaign with new output names (key -> name), moving files as `plan` does."""
    from batchrun.planning import move_renamed_files

    specs = [dataclasses.replace(spec, output_name=names.get(spec.key, spec.output_name))
             for spec in campaign.loaded.jobs()]
    counts = campaign.store.apply_plan(campaign.report.campaign_id, specs)
    return move_renamed_files(campaign.store, campaign.output_dir, counts.moves)


def test_a_chain_of_renames_never_moves_one_jobs_video_under_anothers_record(campaign_factory, make_simulator):
    """A takes B's old name while B's file is missing: B's rename must not carry A's video off."""
    simulator = make_simulator()
    campaign = campaign_factory(2)
    assert campaign.run(simulator).exit_code == 0
    a, b = sorted(campaign.jobs(), key=lambda job: job.key)
    out = campaign.output_dir
    (out / "shot001.mp4").unlink()
    (out / "shot001.mp4.json").unlink()
    _rename_all(campaign, {a.key: "shot001.mp4", b.key: "shot002.mp4"})
    moved_a = campaign.store.get_job(a.id)
    assert moved_a.output_path == str(out / "shot001.mp4")
    assert hashlib.sha256((out / "shot001.mp4").read_bytes()).hexdigest() == a.sha256
    assert campaign.run(simulator).exit_code == 0  # B is fetched again under its new name
    for job in (campaign.store.get_job(a.id), campaign.store.get_job(b.id)):
        assert hashlib.sha256(Path(job.output_path).read_bytes()).hexdigest() == job.sha256
    assert campaign.store.get_job(b.id).output_path == str(out / "shot002.mp4")


def test_a_rename_whose_files_a_crash_did_not_move_is_moved_by_the_next_plan(campaign_factory, make_simulator):
    """kill -9 after the plan committed the new names, before the files moved: planning again
    finds the done job's file under its old name and moves it."""
    simulator = make_simulator()
    campaign = campaign_factory(1)
    campaign.run(simulator)
    [job] = campaign.jobs()
    specs = [dataclasses.replace(spec, output_name="renamed.mp4") for spec in campaign.loaded.jobs()]
    campaign.store.apply_plan(campaign.report.campaign_id, specs)  # committed; the moves never ran
    assert _rename_all(campaign, {job.key: "renamed.mp4"}) == []
    assert campaign.store.get_job(job.id).output_path == str(campaign.output_dir / "renamed.mp4")
    assert (campaign.output_dir / "renamed.mp4.json").exists() and not (campaign.output_dir / "shot000.mp4").exists()


def test_a_rename_cut_between_the_video_and_its_sidecar_is_completed(campaign_factory, make_simulator):
    """kill -9 after the video moved, before its sidecar: the next plan moves the sidecar (with
    the new path in it) and the next run records the new path; nothing is downloaded again."""
    simulator = make_simulator()
    campaign = campaign_factory(1)
    campaign.run(simulator)
    [job] = campaign.jobs()
    out = campaign.output_dir
    specs = [dataclasses.replace(spec, output_name="renamed.mp4") for spec in campaign.loaded.jobs()]
    campaign.store.apply_plan(campaign.report.campaign_id, specs)
    (out / "shot000.mp4").rename(out / "renamed.mp4")  # the crash: the sidecar and the record stay behind
    _rename_all(campaign, {job.key: "renamed.mp4"})
    assert sorted(p.name for p in out.iterdir()) == ["renamed.mp4", "renamed.mp4.json"]
    assert json.loads((out / "renamed.mp4.json").read_text())["files"][0]["path"] == str(out / "renamed.mp4")
    assert campaign.run(simulator).exit_code == 0 and simulator.stats().requests["file"] == 1
    assert campaign.store.get_job(job.id).output_path == str(out / "renamed.mp4")


def test_an_older_revisions_move_aside_cut_by_a_crash_is_completed(campaign_factory, make_simulator):
    """kill -9 after an older revision's video was moved aside, before its sidecar and its record:
    the next run finds it by its sha256 and records it there, sidecar included, before the new
    revision's file takes the name; neither record ever points at the other's video."""
    simulator = make_simulator()
    campaign = campaign_factory(1)
    campaign.run(simulator)
    [old] = campaign.jobs()
    out = campaign.output_dir
    specs = [dataclasses.replace(spec, input={**spec.input, "prompt": "a new prompt"}, fingerprint="")
             for spec in campaign.loaded.jobs()]
    campaign.store.apply_plan(campaign.report.campaign_id, specs)
    (out / "shot000.mp4").rename(out / "shot000.rev1.mp4")  # the crash: sidecar and record stay behind
    assert campaign.run(simulator).exit_code == 0
    old = campaign.store.get_job(old.id)
    [new] = [job for job in campaign.jobs() if job.id != old.id]
    assert old.output_path == str(out / "shot000.rev1.mp4") and new.output_path == str(out / "shot000.mp4")
    for job in (old, new):
        assert hashlib.sha256(Path(job.output_path).read_bytes()).hexdigest() == job.sha256
        assert json.loads(Path(job.output_path + ".json").read_text())["revision"] == job.revision


def test_a_file_no_job_recorded_is_kept_aside_never_overwritten(campaign_factory, make_simulator):
    """The user's own file sits where a job's video goes: it is kept as `name.kept.mp4`."""
    simulator = make_simulator()
    campaign = campaign_factory(1)
    campaign.output_dir.mkdir(parents=True, exist_ok=True)
    (campaign.output_dir / "shot000.mp4").write_bytes(b"the user's own file")
    assert campaign.run(simulator).exit_code == 0
    assert (campaign.output_dir / "shot000.kept.mp4").read_bytes() == b"the user's own file"
    [job] = campaign.jobs()
    assert hashlib.sha256(Path(job.output_path).read_bytes()).hexdigest() == job.sha256
