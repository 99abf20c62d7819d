"""The pool against answers a conforming-but-different RunComfy may give (a scripted fake on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import anyio
import pytest

from batchrun import planning
from batchrun.api import RunComfyClient
from batchrun.download import Downloader
from batchrun.outputs import destinations
from batchrun.pool import EMPTY_OUTPUT_WAITS, Runner, RunOptions
from batchrun.polling import PollSchedule
from batchrun.retry import RetryPolicy
from batchrun.states import JobState
from batchrun.store import open_store, resolve_db_url

FAST = RetryPolicy(max_attempts=3, base=0.001, cap=0.002, max_elapsed=5, retry_after_cap=0.002)


class Script:
    """What the fake answers to /result, one entry per poll (the last one repeats)."""

    def __init__(self, answers: list[tuple[int, dict]], status: list[tuple[int, dict]] | None = None) -> None:
        self.answers = answers
        self.polls = 0
        self.status = status or [(200, {"request_id": "req-1", "status": "in_progress"})]
        self.status_polls = 0


def serve(script: Script) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send(200, {"request_id": "req-1"})

        def do_GET(self) -> None:  # noqa: N802
            if self.path.startswith("/files/"):
                data = b"\x00\x00\x00\x18ftypmp42" + b"x" * 100
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if self.path.endswith("/status"):
                index = min(script.status_polls, len(script.status) - 1)
                script.status_polls += 1
                self._send(*script.status[index])
                return
            index = min(script.polls, len(script.answers) - 1)
            script.polls += 1
            status, body = script.answers[index]
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            self._send(status, json.loads(json.dumps(body).replace("BASE", base)))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def run_one(tmp: Path, script: Script, **options):
    manifest = tmp / "m.yaml"
    manifest.write_text("model: kling/kling-3.0/standard/text-to-video\noutput: {dir: out}\n"
                        "jobs:\n  - prompt: one\n    duration: 3\n")
    campaign = planning.load(manifest)
    store = open_store(resolve_db_url(None, manifest))
    report = planning.plan_campaign(campaign, store)
    server, base = serve(script)

    async def main():
        async with RunComfyClient(base, "tok", retry=FAST) as client, Downloader(retry=FAST) as downloader:
            runner = Runner(store, campaign_id=report.campaign_id, campaign_name="m", output_dir=report.output_dir,
                            client=client, downloader=downloader, options=RunOptions(concurrency=1, **options),
                            schedule=PollSchedule(first=0.01, floor=0.01, cap=0.05, max_idle=0.05))
            # jump the scheduler's clock forward whenever it would wait
            return await runner.run()

    try:
        summary = anyio.run(main)
        (job,) = store.jobs_in_states(report.campaign_id, list(JobState))
        return summary, job
    finally:
        server.shutdown()
        store.close()


def done(url: str) -> tuple[int, dict]:
    return 200, {"request_id": "req-1", "status": "completed", "output": {"video": url}}


def test_a_bare_404_on_a_poll_is_asked_again_before_the_paid_job_is_failed(isolated_env):
    """An undocumented 404 (no error_code) once does not fail a job RunComfy is running for us."""
    script = Script([(404, {"detail": "Not Found"}), done("BASE/files/a.mp4")],
                    status=[(200, {"request_id": "req-1", "status": "in_progress"}),
                            (200, {"request_id": "req-1", "status": "completed"})])
    summary, job = run_one(isolated_env, script)
    assert job.state is JobState.DONE, job.error
    assert script.polls == 2 and script.status_polls == 2


@pytest.mark.parametrize(("code", "said"), [(404001, "no longer knows"), (403001, "refuses to show")])
def test_the_documented_unknown_request_code_fails_the_job_at_once(isolated_env, code, said):
    """404001 means the request is gone, 403001 that it is another account's: the job fails after
    one poll, saying which, with the server's message."""
    script = Script([(code // 1000, {"error_code": code, "error_message": "request expired"})])
    summary, job = run_one(isolated_env, script)
    assert job.state is JobState.FAILED and "expired" in job.error and f"RunComfy {said} request" in job.error
    assert script.polls == 1


@pytest.mark.parametrize("status_code", [403, 404, 409, 418])
def test_repeated_odd_answers_never_fail_the_paid_job(isolated_env, status_code):
    """Undocumented refusals (an outage's bare 404 or 403) are an outage, not an answer: the job
    is asked about until `poll_give_up_seconds`, then left as it is for the next run."""
    refusal = (status_code, {"message": "no such thing"})
    script = Script([refusal], status=[refusal])
    summary, job = run_one(isolated_env, script, poll_give_up_seconds=0.3)
    assert job.state is JobState.QUEUED and job.error is None
    assert summary.exit_code == 1
    assert script.polls == 1 and script.status_polls >= 2  # asked again, through /status


def test_destinations_of_extra_files_never_take_another_jobs_name():
    """A job with several result files names the extras name~2, name~3: no id can produce those."""
    paths = destinations(Path("/out"), "a.mp4", ["https://x/1.mp4", "https://x/2.mp4", "https://x/3.png"])
    assert [p.name for p in paths] == ["a.mp4", "a~2.mp4", "a~3.png"]


def test_an_image_first_output_never_takes_a_video_name():
    """No video in the output: the image keeps its own extension; a name the user chose that is
    not a video name is kept as it is."""
    assert [p.name for p in destinations(Path("/o"), "a.mp4", ["https://x/f.JPG?sig=1", "https://x/g"])] == [
        "a.JPG", "a~2.JPG"]
    assert [p.name for p in destinations(Path("/o"), "a.mp4", ["https://x/video"])] == ["a.mp4"]
    assert [p.name for p in destinations(Path("/o"), "a.bin", ["https://x/f.png"])] == ["a.bin"]


def test_a_completed_job_without_output_is_asked_again_for_about_a_minute():
    """`completed` with no output yet is polled again over ~a minute before the job is failed."""
    assert 50 <= sum(EMPTY_OUTPUT_WAITS) <= 120


def test_a_result_endpoint_that_refuses_until_done_is_followed_through_status(isolated_env):
    """If /result refuses while a job runs (undocumented), batchrun asks /status and fetches /result once done."""
    not_ready = (400, {"message": "request not completed yet"})
    script = Script([not_ready, done("BASE/files/a.mp4")],
                    status=[(200, {"request_id": "req-1", "status": "in_progress"}),
                            (200, {"request_id": "req-1", "status": "in_progress"}),
                            (200, {"request_id": "req-1", "status": "completed"})])
    summary, job = run_one(isolated_env, script)
    assert job.state is JobState.DONE, job.error
    assert script.status_polls == 3 and script.polls == 2  # one refusal, then one /result once completed
