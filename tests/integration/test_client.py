"""The API client against the simulator over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from batchrun.api import RunComfyClient, SubmitOutcomeUnknown
from batchrun.errors import (
    AuthError,
    InsufficientBalanceError,
    RequestNotFoundError,
    TransientApiError,
    UnknownModelError,
    ValidationRejectedError,
)
from batchrun.retry import RetryPolicy

pytest.importorskip("batchrun.sim")
from batchrun.sim import Faults, Latency  # noqa: E402

T2V = "kling/kling-3.0/pro/text-to-video"
INPUT = {"prompt": "a lighthouse at dusk", "duration": 5}
FAST = RetryPolicy(max_attempts=12, base=0.01, cap=0.05, max_elapsed=None)


def drive(sim: Any, body: Callable[[RunComfyClient], Awaitable[Any]], **kw: Any) -> list[float]:
    """Run ``body`` with a client for ``sim``; returns the sleeps the retry policy asked for."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        kw.setdefault("retry", FAST)
        async with RunComfyClient(sim.base_url, sim.config.token, sleep=record, timeout=10, **kw) as client:
            await body(client)

    anyio.run(main)
    return slept


def test_lifecycle_submit_poll_result(make_simulator: Any) -> None:
    """A job goes queued/running -> completed and its result lists the file URL."""
    sim = make_simulator(latency=Latency(kind="manual"))

    async def body(client: RunComfyClient) -> None:
        sub = await client.submit(T2V, INPUT)
        assert sub.request_id and sub.status_url and sub.result_url
        first = await client.result(sub.request_id)
        assert first.status in ("queued", "running") and first.output_urls == ()
        status = await client.status(sub.request_id)
        assert status.status in ("queued", "running")
        sim.finish(sub.request_id)
        done = await client.result(sub.request_id)
        assert done.status == "completed" and done.raw_status == "completed"
        assert done.output_urls == (sim.file_url(sub.request_id),)
        assert done.created_at is not None and done.finished_at is not None
        assert client.request_counts == {"submit": 1, "status": 1, "result": 2, "cancel": 0}

    drive(sim, body)
    stats = sim.stats()
    assert stats.jobs_created == 1 and stats.requests["submit"] == 1


def test_alt_variant_spellings_and_videos_list(make_simulator: Any) -> None:
    """The alternative spellings (succeeded, canceled, output.videos[], bare submit answer) work."""
    sim = make_simulator(latency=Latency(kind="manual"), status_variant="alt", submit_http_status=202, capacity=1)

    async def body(client: RunComfyClient) -> None:
        running = await client.submit(T2V, INPUT)
        queued = await client.submit(T2V, {**INPUT, "prompt": "second"})
        assert running.status_url is None
        cancel = await client.cancel(queued.request_id)
        assert cancel.cancelled and cancel.status == "cancelled"
        sim.finish(running.request_id)
        done = await client.result(running.request_id)
        assert done.status == "completed" and done.raw_status == "succeeded"
        assert done.output_urls == (sim.file_url(running.request_id),)
        gone = await client.result(queued.request_id)
        assert gone.status == "cancelled" and gone.raw_status == "canceled"

    drive(sim, body)


def test_queue_position_and_not_cancellable(make_simulator: Any) -> None:
    """Queued jobs report their position; a running job cannot be cancelled (it will be billed)."""
    sim = make_simulator(latency=Latency(kind="manual"), capacity=1)

    async def body(client: RunComfyClient) -> None:
        first = await client.submit(T2V, INPUT)
        second = await client.submit(T2V, {**INPUT, "prompt": "b"})
        assert (await client.result(first.request_id)).status == "running"
        waiting = await client.status(second.request_id)
        assert waiting.status == "queued" and waiting.queue_position is not None
        refused = await client.cancel(first.request_id)
        assert not refused.cancelled and refused.outcome == "not_cancellable"

    drive(sim, body)


def test_failed_job_reports_error(make_simulator: Any) -> None:
    """A failed generation comes back as failed with the server's error text."""
    sim = make_simulator(latency=Latency(kind="manual"))

    async def body(client: RunComfyClient) -> None:
        sub = await client.submit(T2V, INPUT)
        await client.result(sub.request_id)
        sim.finish(sub.request_id, fail=True)
        report = await client.result(sub.request_id)
        assert report.status == "failed" and report.error and report.output_urls == ()

    drive(sim, body)


def test_refusals_map_to_errors(make_simulator: Any) -> None:
    """Unknown model, invalid input, unknown request and no balance each raise their own error."""
    sim = make_simulator(balance=0.0, error_message_key="message")

    async def body(client: RunComfyClient) -> None:
        with pytest.raises(UnknownModelError):
            await client.submit("kling/kling-9/nope", INPUT)
        with pytest.raises(ValidationRejectedError, match="duration"):
            await client.submit(T2V, {"prompt": "x", "duration": 99})
        with pytest.raises(RequestNotFoundError):
            await client.result("does-not-exist")
        with pytest.raises(InsufficientBalanceError):
            await client.submit(T2V, INPUT)

    assert drive(sim, body) == []
    assert sim.stats().jobs_created == 0


def test_bad_token_stops_with_auth_error(simulator: Any) -> None:
    """A wrong token raises AuthError at once, without the token in the message."""

    async def main() -> None:
        async with RunComfyClient(simulator.base_url, "wrong-token-XYZ") as client:
            with pytest.raises(AuthError) as info:
                await client.submit(T2V, INPUT)
            assert "wrong-token-XYZ" not in str(info.value)

    anyio.run(main)


def test_transient_faults_are_survived_without_duplicates(make_simulator: Any) -> None:
    """Under 5xx, 429 and error-in-200 faults polls succeed after retries, a refused submit created
    nothing (posting it again creates it once), and no job is created twice."""
    sim = make_simulator(
        latency=Latency(kind="fixed", value=0.0),
        faults=Faults(server_error=0.3, rate_limit=0.2, retry_after=3, error_200=0.2),
        seed=7,
    )

    async def body(client: RunComfyClient) -> None:
        ids, refused = [], 0
        for i in range(8):
            while True:
                try:
                    ids.append((await client.submit(T2V, {**INPUT, "prompt": f"p{i}"})).request_id)
                    break
                except TransientApiError:
                    refused += 1
        assert refused > 0
        for rid in ids:
            report = await client.result(rid)
            while not report.is_terminal:
                report = await client.result(rid)
            assert report.status == "completed"

    slept = drive(sim, body)
    stats = sim.stats()
    assert stats.jobs_created == 8 and stats.duplicates() == 0
    assert sum(stats.faults_injected.values()) > 0
    assert 3 in slept  # Retry-After honoured over the backoff


def test_lost_submit_raises_outcome_unknown_and_does_not_resubmit(make_simulator: Any) -> None:
    """When RunComfy created the job but the answer was lost, submit says so and never POSTs again."""
    sim = make_simulator(faults=Faults(lost_submit=1.0))

    async def body(client: RunComfyClient) -> None:
        with pytest.raises(SubmitOutcomeUnknown):
            await client.submit(T2V, INPUT)

    assert drive(sim, body) == []
    stats = sim.stats()
    assert stats.requests["submit"] == 1 and stats.jobs_created == 1


def test_connection_resets_on_polls_are_retried(make_simulator: Any) -> None:
    """Aborted connections on status checks are retried transparently."""
    sim = make_simulator(faults=Faults(reset=0.4), seed=3, latency=Latency(kind="manual"))

    async def body(client: RunComfyClient) -> None:
        sim.set_faults(Faults())
        sub = await client.submit(T2V, INPUT)
        sim.set_faults(Faults(reset=0.4))
        for _ in range(10):
            assert (await client.result(sub.request_id)).status in ("queued", "running")

    drive(sim, body)
    assert sim.stats().faults_injected.get("reset", 0) > 0
