"""The API client and downloader against single odd answers (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from batchrun.api import RunComfyClient, SubmitOutcomeUnknown, UnexpectedAnswerError
from batchrun.download import Downloader
from batchrun.errors import (
    PermanentDownloadError,
    AuthError,
    BatchrunError,
    ConfigError,
    ForbiddenError,
    InsufficientBalanceError,
    PermanentApiError,
    RequestNotFoundError,
    TransientApiError,
    UnknownModelError,
    ValidationRejectedError,
)
from batchrun.retry import RetryPolicy

TOKEN = "sk-live-TOPSECRET-123"
BASE = "https://api.test"
MODEL = "kling/kling-3.0/pro/text-to-video"
POLICY = RetryPolicy(max_attempts=4, base=1, cap=4, max_elapsed=None, jitter=False)
Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a script and records requests and sleeps."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.slept: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        return answer

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def client_for(rec: Recorder, retry: RetryPolicy = POLICY) -> RunComfyClient:
    return RunComfyClient(BASE, TOKEN, retry=retry, sleep=rec.sleep, transport=httpx.MockTransport(rec))


def ok(**fields: object) -> httpx.Response:
    return httpx.Response(200, json=fields)


def run(coro_fn: Callable[[], object]) -> object:
    return anyio.run(coro_fn)  # type: ignore[arg-type]


def test_submit_posts_the_input_as_the_whole_body_with_auth() -> None:
    """The model's input JSON is the body (no wrapper) and the token rides in Authorization."""
    rec = Recorder(ok(request_id="r-1", status_url="https://elsewhere/x"))

    async def main() -> None:
        async with client_for(rec) as client:
            sub = await client.submit("kling/kling-3.0/pro/text-to-video", {"prompt": "a cat"})
            assert sub.request_id == "r-1"
            assert client.request_counts["submit"] == 1

    run(main)
    (request,) = rec.requests
    assert request.method == "POST"
    assert request.url == f"{BASE}/v1/models/kling/kling-3.0/pro/text-to-video"
    assert json.loads(request.content) == {"prompt": "a cat"}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["user-agent"].startswith("batchrun/")


def test_error_code_on_http_200_raises() -> None:
    """A 200 that carries error_code 400002 stops submitting instead of counting as accepted."""
    rec = Recorder(ok(error_code=400002, error_message="balance too low"))

    async def main() -> None:
        async with client_for(rec) as client:
            with pytest.raises(InsufficientBalanceError, match="balance too low"):
                await client.submit("m", {})

    run(main)
    assert len(rec.requests) == 1 and rec.slept == []


def test_html_502_is_retried_then_succeeds() -> None:
    """A proxy's HTML 502 on a poll is retried with backoff; the sleeps are the policy's."""
    page = httpx.Response(502, text="<html><title>502 Bad Gateway</title></html>")
    rec = Recorder(page, page, ok(request_id="r", status="in_progress"))

    async def main() -> None:
        async with client_for(rec) as client:
            report = await client.result("r")
            assert report.status == "running"
            assert client.request_counts["result"] == 3

    run(main)
    assert rec.slept == [1, 2]


@pytest.mark.parametrize("status", [504, 520, 524])
def test_a_gateway_timeout_on_submit_is_a_lost_answer_never_a_second_post(status: int) -> None:
    """A 504 (or a Cloudflare-style 520/524) means a proxy stopped waiting for RunComfy, which had
    the request and may have created the job: no retry."""
    rec = Recorder(httpx.Response(status, text=f"<html><title>{status}</title></html>"), ok(request_id="r-2"))

    async def main() -> None:
        async with client_for(rec) as client:
            with pytest.raises(SubmitOutcomeUnknown, match=f"HTTP {status}"):
                await client.submit("m", {"prompt": "x"})

    run(main)
    assert len(rec.requests) == 1 and rec.slept == []


@pytest.mark.parametrize(
    ("answer", "retry_after"),
    [
        (httpx.Response(429, headers={"Retry-After": "17"}), 17),
        (httpx.Response(500, json={"error_code": 500001}), None),
        (httpx.Response(503, text="<html>down</html>"), None),
        (httpx.ConnectError("refused"), None),
    ],
)
def test_a_certain_refusal_of_a_submit_is_raised_at_once_for_the_caller_to_retry(answer, retry_after) -> None:
    """A 429, a 5xx or a connection never made: nothing was created. The client posts once and
    raises a TransientApiError (with the server's Retry-After), so that the runner can record the
    job as not submitted before it waits; it never sleeps with the job in `submitting`."""
    rec = Recorder(answer, ok(request_id="r-2"))

    async def main() -> None:
        async with client_for(rec) as client:
            with pytest.raises(TransientApiError) as info:
                await client.submit("m", {"prompt": "x"})
            assert getattr(info.value, "retry_after", None) == retry_after
            assert TOKEN not in str(info.value)

    run(main)
    assert len(rec.requests) == 1 and rec.slept == []


@pytest.mark.parametrize(
    "answer",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset by peer"),
        httpx.WriteTimeout("write timed out"),
        httpx.Response(200, json={"status": "in_queue"}),
        httpx.Response(201, text="<html>created</html>"),
    ],
)
def test_lost_submit_answer_is_never_resubmitted(answer: object) -> None:
    """When the POST may have created a (billed) job, submit raises SubmitOutcomeUnknown once."""
    rec = Recorder(answer)  # type: ignore[arg-type]

    async def main() -> None:
        async with client_for(rec) as client:
            with pytest.raises(SubmitOutcomeUnknown) as info:
                await client.submit("m", {"prompt": "x"})
            assert not isinstance(info.value, TransientApiError)
            assert TOKEN not in str(info.value)

    run(main)
    assert len(rec.requests) == 1 and rec.slept == []


def test_lost_answer_keeps_the_cause() -> None:
    """The runner can log what went wrong with the lost submit."""
    rec = Recorder(httpx.ReadTimeout("read timed out"))

    async def main() -> None:
        async with client_for(rec) as client:
            with pytest.raises(SubmitOutcomeUnknown) as info:
                await client.submit("m", {})
            assert isinstance(info.value.cause, httpx.ReadTimeout)

    run(main)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(400, json={"error_code": 400001, "message": "no model"}), UnknownModelError),
        (httpx.Response(404, text="Not Found"), UnknownModelError),
        (httpx.Response(422, json={"error_code": 422001, "detail": [{"loc": ["body", "prompt"], "msg": "field required"}]}), ValidationRejectedError),
        (httpx.Response(401, json={"error_code": 401001}), AuthError),
        (httpx.Response(409, text="conflict"), PermanentApiError),
        (httpx.Response(302, headers={"Location": "https://login.example/"}), PermanentApiError),
    ],
)
def test_no_retry_on_4xx(answer: httpx.Response, expected: type) -> None:
    """Refusals fail at once: no waiting, no second (possibly billed) POST."""
    rec = Recorder(answer)

    async def main() -> None:
        async with client_for(rec) as client:
            with pytest.raises(expected):
                await client.submit("m", {"prompt": "x"})

    run(main)
    assert len(rec.requests) == 1 and rec.slept == []


def test_polls_retry_transport_errors_until_the_policy_gives_up() -> None:
    """Status checks survive network blips; after the last attempt a TransientApiError surfaces."""
    rec = Recorder(httpx.ReadTimeout("slow"))

    async def main() -> None:
        async with client_for(rec) as client:
            with pytest.raises(TransientApiError) as info:
                await client.status("r")
            assert isinstance(info.value.__cause__, httpx.ReadTimeout)

    run(main)
    assert len(rec.requests) == 4 and rec.slept == [1, 2, 4]


def _endless(chunk: bytes = b"[" * 65536):
    """A body that never ends, sent without a Content-Length (as a broken proxy might)."""
    async def stream():
        while True:
            yield chunk
    return httpx.Response(200, headers={"content-type": "application/json"}, content=stream())


@pytest.mark.parametrize("answer", [
    lambda request: _endless(),
    lambda request: httpx.Response(200, headers={"content-length": str(1 << 30)}, content=b"{}"),
])
def test_an_enormous_or_endless_answer_is_cut_off_not_read_into_memory(answer) -> None:
    """An API answer past 16 MB is a lost answer: a poll is retried (then a TransientApiError), a
    submit is in doubt; the process never holds the whole body."""
    rec = Recorder(answer)

    async def main() -> None:
        async with client_for(rec) as client:
            with pytest.raises(TransientApiError, match="limit"):
                await client.status("r")
            with pytest.raises(SubmitOutcomeUnknown, match="limit"):
                await client.submit("kling/kling-3.0/pro/text-to-video", {"prompt": "a cat"})

    run(main)
    assert len(rec.requests) == 5  # four polls, one submit


def test_status_result_cancel_use_documented_paths_and_parse() -> None:
    """The three idempotent calls hit base_url + documented paths, whatever URLs the submit gave."""

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/status"):
            return ok(request_id="a/b", status="in_queue", queue_position=2)
        if path.endswith("/result"):
            return ok(request_id="a/b", status="completed", output={"video": "https://cdn/x.mp4"})
        return ok(request_id="a/b", status="in_progress", outcome="not_cancellable")

    rec = Recorder(answer)

    async def main() -> None:
        async with client_for(rec) as client:
            status = await client.status("a/b")
            result = await client.result("a/b")
            cancel = await client.cancel("a/b")
            assert (status.status, status.queue_position) == ("queued", 2)
            assert result.output_urls == ("https://cdn/x.mp4",)
            assert not cancel.cancelled and cancel.outcome == "not_cancellable"
            assert client.request_counts == {"submit": 0, "status": 1, "result": 1, "cancel": 1}

    run(main)
    assert [r.url.raw_path for r in rec.requests] == [
        b"/v1/requests/a%2Fb/status",
        b"/v1/requests/a%2Fb/result",
        b"/v1/requests/a%2Fb/cancel",
    ]
    assert [r.method for r in rec.requests] == ["GET", "GET", "POST"]


def test_request_not_found_fails_the_poll() -> None:
    """An expired request id is reported once, not retried."""
    rec = Recorder(httpx.Response(404, json={"error_code": 404001, "message": "gone"}))

    async def main() -> None:
        async with client_for(rec) as client:
            with pytest.raises(RequestNotFoundError):
                await client.result("r")

    run(main)
    assert len(rec.requests) == 1


def test_token_absent_from_every_error_message() -> None:
    """Errors shown to the user or stored never contain the API token, even if the server echoes it."""
    echo = f"invalid token Bearer {TOKEN} ({TOKEN})"
    answers: list[httpx.Response | Exception] = [
        httpx.Response(401, json={"error_code": 401001, "message": echo}),
        httpx.Response(400, json={"error_code": 400001, "error_message": echo}),
        httpx.Response(500, text=f"<html><title>{echo}</title></html>"),
        httpx.Response(200, json={"error_code": 403001, "message": echo}),
        httpx.ReadTimeout(echo),
        httpx.ConnectError(echo),
    ]
    seen: list[BatchrunError] = []

    async def main() -> None:
        for answer in answers:
            rec = Recorder(answer)
            async with client_for(rec, retry=RetryPolicy(max_attempts=1)) as client:
                for call in (lambda: client.submit("m", {}), lambda: client.result("r")):
                    try:
                        await call()
                    except BatchrunError as error:
                        seen.append(error)

    run(main)
    assert len(seen) == 2 * len(answers)
    for error in seen:
        assert TOKEN not in str(error) and TOKEN not in error.message and TOKEN not in repr(error.args)


def test_client_repr_hides_the_token() -> None:
    """Logging the client object never leaks the token."""
    client = RunComfyClient(BASE, TOKEN, transport=httpx.MockTransport(lambda r: ok()))
    assert TOKEN not in repr(client)
    anyio.run(client.aclose)


def test_downloads_carry_no_authorization(tmp_path: Path) -> None:
    """Result files are fetched without the RunComfy token (they live on other hosts)."""
    seen: list[httpx.Request] = []

    def files(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=b"video-bytes")

    async def main() -> None:
        async with client_for(Recorder(ok(request_id="r"))) as client:
            await client.submit("m", {})
        async with Downloader(transport=httpx.MockTransport(files)) as downloader:
            got = await downloader.fetch("https://cdn.test/r.mp4", tmp_path / "r.mp4")
            assert got.size == len(b"video-bytes")

    run(main)
    assert seen and all("authorization" not in r.headers for r in seen)


# --- the downloader on odd file-host answers -------------------------------------------------


def left_part(dest: Path, data: bytes, *, source: str = "https://cdn.test/clip.mp4",
              etag: str | None = None, last_modified: str | None = None) -> None:
    """A `.part` an earlier fetch of ``source`` left behind, with its record."""
    dest.with_name(dest.name + ".part").write_bytes(data)
    dest.with_name(dest.name + ".part.json").write_text(
        json.dumps({"source": source, "etag": etag, "last_modified": last_modified}))


def download(handler: Handler, dest: Path, **kw: object) -> object:
    async def noop(_: float) -> None:
        return None

    async def main() -> object:
        async with Downloader(transport=httpx.MockTransport(handler), sleep=noop, retry=POLICY, **kw) as d:  # type: ignore[arg-type]
            return await d.fetch("https://cdn.test/clip.mp4", dest)

    return anyio.run(main)


def test_resume_answered_with_200_starts_over(tmp_path: Path) -> None:
    """A file host that ignores Range still yields a byte-exact file (the stale part is replaced)."""
    dest = tmp_path / "clip.mp4"
    left_part(dest, b"GARBAGE")
    ranges: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ranges.append(request.headers.get("range"))
        return httpx.Response(200, content=b"0123456789")

    got = download(handler, dest)
    assert ranges == ["bytes=7-"]
    assert dest.read_bytes() == b"0123456789" and got.size == 10  # type: ignore[attr-defined]


def test_resume_with_206_appends_and_hashes_the_whole_file(tmp_path: Path) -> None:
    """A resumed file's sha256 covers the old part and the new bytes."""
    import hashlib

    dest = tmp_path / "clip.mp4"
    left_part(dest, b"01234")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["range"] == "bytes=5-"
        return httpx.Response(206, headers={"Content-Range": "bytes 5-9/10"}, content=b"56789")

    got = download(handler, dest)
    assert dest.read_bytes() == b"0123456789"
    assert got.sha256 == hashlib.sha256(b"0123456789").hexdigest()  # type: ignore[attr-defined]


def test_unexpected_content_range_starts_over(tmp_path: Path) -> None:
    """A 206 for the wrong range is never spliced onto the part."""
    dest = tmp_path / "clip.mp4"
    left_part(dest, b"01234")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("range"):
            return httpx.Response(206, headers={"Content-Range": "bytes 0-9/10"}, content=b"0123456789")
        return httpx.Response(200, content=b"0123456789")

    download(handler, dest)
    assert dest.read_bytes() == b"0123456789"


def test_a_compressed_slice_is_never_spliced_onto_decoded_bytes(tmp_path: Path) -> None:
    """A host that gzips a 206 sends a slice of the compressed file: the part is dropped and the
    whole file fetched again, so the video is byte-exact (not decoded bytes + a gzip fragment)."""
    import gzip
    import random

    full = random.Random(7).randbytes(10_000)  # incompressible: the gzip is longer than 1,000 bytes
    packed = gzip.compress(full)
    dest = tmp_path / "clip.mp4"
    left_part(dest, full[:1000])  # an earlier answer, decoded by httpx
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.headers.get("range"))
        if request.headers.get("range"):
            tail = packed[1000:]
            return httpx.Response(206, content=gzip.compress(tail), headers={
                "Content-Encoding": "gzip", "Content-Range": f"bytes 1000-{len(packed) - 1}/{len(packed)}"})
        return httpx.Response(200, content=packed, headers={"Content-Encoding": "gzip"})

    got = download(handler, dest)
    assert asked == ["bytes=1000-", None]
    assert dest.read_bytes() == full and got.size == len(full)  # type: ignore[attr-defined]


def test_a_part_left_by_another_file_is_never_continued(tmp_path: Path) -> None:
    """A `.part` under this name from another source (another job, revision or campaign in the
    same folder), or one without its record (an older batchrun), is dropped, not resumed."""
    for name, record in (("a.mp4", "https://cdn.test/other.mp4"), ("b.mp4", None)):
        dest = tmp_path / name
        if record:
            left_part(dest, b"OTHER", source=record)
        else:
            dest.with_name(name + ".part").write_bytes(b"OTHER")
        asked: list[str | None] = []

        def handler(request: httpx.Request) -> httpx.Response:
            asked.append(request.headers.get("range"))
            if request.headers.get("range"):
                return httpx.Response(206, headers={"Content-Range": "bytes 5-9/10"}, content=b"56789")
            return httpx.Response(200, content=b"0123456789")

        download(handler, dest)
        assert asked == [None] and dest.read_bytes() == b"0123456789"
        assert sorted(p.name for p in tmp_path.glob(name + "*")) == [name]


def test_a_resume_asks_for_the_rest_of_the_same_version_only(tmp_path: Path) -> None:
    """The validator recorded with the part is sent as If-Range; a 206 of another version (a
    server that ignores If-Range) starts over instead of splicing two files."""
    dest = tmp_path / "clip.mp4"
    left_part(dest, b"01234", etag='"v1"')
    seen: list[tuple[str | None, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("range"), request.headers.get("if-range")))
        if request.headers.get("range"):
            return httpx.Response(206, headers={"Content-Range": "bytes 5-9/10", "ETag": '"v2"'}, content=b"vwxyz")
        return httpx.Response(200, headers={"ETag": '"v2"'}, content=b"ABCDEvwxyz")

    download(handler, dest)
    assert seen == [("bytes=5-", '"v1"'), (None, None)]
    assert dest.read_bytes() == b"ABCDEvwxyz"
    assert not dest.with_name("clip.mp4.part.json").exists()


MONDAY, TUESDAY = "Mon, 31 Mar 2025 10:00:00 GMT", "Tue, 01 Apr 2025 10:00:00 GMT"


def test_a_date_validator_also_keeps_two_versions_apart(tmp_path: Path) -> None:
    """A host without ETags: the Last-Modified date is sent as If-Range, and a 206 of a newer
    file (a host that ignores If-Range) starts over."""
    dest = tmp_path / "clip.mp4"
    left_part(dest, b"AAAAA", last_modified=MONDAY)
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("if-range"))
        if request.headers.get("range"):
            return httpx.Response(206, headers={"Content-Range": "bytes 5-9/10", "Last-Modified": TUESDAY},
                                  content=b"BBBBB")
        return httpx.Response(200, headers={"Last-Modified": TUESDAY}, content=b"CCCCCBBBBB")

    download(handler, dest)
    assert seen == [MONDAY, None] and dest.read_bytes() == b"CCCCCBBBBB"


def test_a_resume_is_kept_when_the_answer_cannot_be_compared(tmp_path: Path) -> None:
    """A recorded ETag against a 206 that carries only a date is no evidence of a new version:
    the resume goes on (a flaky link must still finish a big file)."""
    dest = tmp_path / "clip.mp4"
    left_part(dest, b"01234", etag='"v1"')

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["if-range"] == '"v1"'
        return httpx.Response(206, headers={"Content-Range": "bytes 5-9/10", "Last-Modified": TUESDAY},
                              content=b"56789")

    download(handler, dest)
    assert dest.read_bytes() == b"0123456789"


def test_a_complete_part_of_another_version_is_not_taken_as_done(tmp_path: Path) -> None:
    """A 416 saying the part is whole, from a host whose file changed (another ETag): fetched anew."""
    dest = tmp_path / "clip.mp4"
    left_part(dest, b"OLD!!", etag='"v1"')

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("range"):
            return httpx.Response(416, headers={"Content-Range": "bytes */5", "ETag": '"v2"'})
        return httpx.Response(200, headers={"ETag": '"v2"'}, content=b"NEW!!")

    download(handler, dest)
    assert dest.read_bytes() == b"NEW!!"


def test_a_refreshed_signature_resumes_the_same_source(tmp_path: Path) -> None:
    """The caller's `source` names the file, not the URL: a new signature continues the part."""
    dest = tmp_path / "clip.mp4"
    left_part(dest, b"01234", source="job 7 file 0")

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["range"] == "bytes=5-"
        return httpx.Response(206, headers={"Content-Range": "bytes 5-9/10"}, content=b"56789")

    async def main() -> object:
        async with Downloader(transport=httpx.MockTransport(handler), retry=POLICY) as d:
            return await d.fetch("https://cdn.test/clip.mp4?sig=new", dest, source="job 7 file 0")

    anyio.run(main)
    assert dest.read_bytes() == b"0123456789"


def test_announced_size_over_the_cap_is_refused_before_streaming(tmp_path: Path) -> None:
    """A huge Content-Length is refused up front, leaving no file."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Content-Length": "5000"}, content=b"x" * 5000)

    with pytest.raises(PermanentDownloadError, match="limit"):
        download(handler, tmp_path / "clip.mp4", max_bytes=100)
    assert list(tmp_path.glob("clip.mp4*")) == []


def test_file_host_5xx_is_retried_and_403_is_permanent(tmp_path: Path) -> None:
    """A flaky CDN is retried; a forbidden file fails once without leftovers."""
    answers = [httpx.Response(503), httpx.Response(200, content=b"ok")]
    download(lambda r: answers.pop(0), tmp_path / "a.mp4")
    assert (tmp_path / "a.mp4").read_bytes() == b"ok"
    with pytest.raises(PermanentDownloadError, match="403"):
        download(lambda r: httpx.Response(403), tmp_path / "b.mp4")
    assert not (tmp_path / "b.mp4.part").exists()


def test_redirect_never_gains_credentials(tmp_path: Path) -> None:
    """Following a redirect to another host sends no Authorization or cookies."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "cdn.test":
            return httpx.Response(302, headers={"Location": "https://other.test/x.mp4", "Set-Cookie": "s=1"})
        return httpx.Response(200, content=b"data")

    async def noop(_: float) -> None:
        return None

    async def main() -> None:
        async with Downloader(transport=httpx.MockTransport(handler), sleep=noop) as downloader:
            await downloader.fetch("https://cdn.test/clip.mp4", tmp_path / "x.mp4")
            await downloader.fetch("https://cdn.test/clip.mp4", tmp_path / "y.mp4")

    anyio.run(main)
    assert [r.url.host for r in seen] == ["cdn.test", "other.test"] * 2
    assert all("authorization" not in r.headers and "cookie" not in r.headers for r in seen)


# --- an independent server's odd answers -------------------------------------------------------


def test_echoed_token_never_reaches_a_stored_field() -> None:
    """A server echoing the token into a failure, status or cancel answer never hands it to the store."""
    echo = f"upstream said: Bearer {TOKEN} was refused (token={TOKEN})"
    long_echo = "y" * 290 + TOKEN  # cut at the length limit right through the token

    def answer(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/status"):
            return ok(request_id="r", status=f"failed: {echo}", error=echo)
        if path.endswith("/result"):
            error = long_echo if request.url.params.get("long") else echo
            return ok(request_id=f"r {TOKEN}", status="failed", error=error, detail={"why": echo})
        return ok(request_id="r", status="in_progress", outcome=f"not_cancellable ({echo})")

    rec = Recorder(answer)

    async def main() -> list[object]:
        async with client_for(rec) as client:
            result = await client.result("r")
            status = await client.status("r")
            cancel = await client.cancel("r")
            client._http.params = httpx.QueryParams(long="1")  # type: ignore[attr-defined]
            cut = await client.result("r")
            return [result, status, cancel, cut]

    reports = run(main)
    text = repr(reports) + "".join(repr(getattr(r, "raw", "")) for r in reports)  # type: ignore[union-attr]
    assert TOKEN not in text and TOKEN[:8] not in text
    assert "Bearer [redacted]" in reports[0].error  # type: ignore[index,attr-defined]
    assert reports[0].status == "failed"  # type: ignore[index,attr-defined]


@pytest.mark.parametrize("token", ["t", "req-1", "4"])
def test_a_test_token_found_inside_ids_and_urls_changes_nothing(token: str) -> None:
    """A token too short to be a secret (`t`, `req-1`: what a test server takes) is inside ids,
    URLs and words by chance: they are read exactly as sent, and messages are not garbled. (A
    real token, 8 characters or more, is redacted everywhere, even in an id a server echoes.)"""
    request_id = "req-1-4"
    video = "https://cdn.test/req-1.mp4?t=1"

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return ok(request_id=request_id, status_url="https://x.test/status")
        if request.url.params.get("failed"):
            return ok(request_id=request_id, status="failed", error="the prompt was rejected")
        return ok(request_id=request_id, status="completed", output={"video": video})

    rec = Recorder(answer)

    async def main() -> list[object]:
        async with RunComfyClient(BASE, token, retry=POLICY, sleep=rec.sleep, transport=httpx.MockTransport(rec)) as c:
            submission = await c.submit(MODEL, {"prompt": "a"})
            done = await c.result(submission.request_id)
            c._http.params = httpx.QueryParams(failed="1")  # type: ignore[attr-defined]
            failed = await c.result(submission.request_id)
            return [submission, done, failed]

    submission, done, failed = run(main)  # type: ignore[misc]
    assert submission.request_id == request_id and done.output_urls == (video,)
    assert rec.requests[1].url.path == f"/v1/requests/{request_id}/result"
    assert failed.error == "the prompt was rejected"


def test_a_real_token_echoed_in_an_id_or_a_url_is_redacted_there_too() -> None:
    """The token must reach no database or export: a server that echoes it into a request id or
    an output URL has it replaced there as well (a test token, too short to search, is not)."""
    rec = Recorder(lambda request: ok(request_id=f"r-{TOKEN}", status="completed",
                                      output={"video": f"https://cdn.test/a.mp4?sig={TOKEN}"}))

    async def main() -> list[object]:
        async with client_for(rec) as client:
            return [await client.submit(MODEL, {"prompt": "a"}), await client.result("r")]

    submission, report = run(main)  # type: ignore[misc]
    assert submission.request_id == "r-[redacted]"
    assert report.output_urls == ("https://cdn.test/a.mp4?sig=[redacted]",)


@pytest.mark.parametrize("code", [500001, 429])
def test_a_2xx_submit_answer_naming_a_request_id_is_a_created_job_despite_an_error_code(code: int) -> None:
    """`200 {"request_id": "r1", "error_code": 500001}`: the id says the job exists (and is
    billed), so it is taken and polled, never posted again as if refused."""
    rec = Recorder(lambda request: ok(request_id="r1", status="in_queue", error_code=code, error_message="degraded"))

    async def main() -> object:
        async with client_for(rec) as client:
            return await client.submit(MODEL, {"prompt": "a"})

    assert run(main).request_id == "r1"  # type: ignore[attr-defined]
    assert len(rec.requests) == 1


@pytest.mark.parametrize(("code", "error"), [(401001, AuthError), (400002, InsufficientBalanceError),
                                             (422001, ValidationRejectedError), (400001, UnknownModelError),
                                             (403001, ForbiddenError)])
def test_a_2xx_submit_answer_refusing_the_job_or_the_run_keeps_its_meaning(code: int, error: type) -> None:
    """A refusal of the token, the balance or the job itself (shown with its detail) keeps its
    meaning even beside a request id: nothing is generated for it."""
    rec = Recorder(lambda request: ok(request_id="r1", error_code=code, error_message="no"))

    async def main() -> None:
        async with client_for(rec) as client:
            await client.submit(MODEL, {"prompt": "a"})

    with pytest.raises(error):
        run(main)


def test_echoed_token_never_reaches_an_exception() -> None:
    """Every error raised by a poll, however the server phrased it, is free of the token."""
    echo = "z" * 480 + f" Bearer {TOKEN} {TOKEN}"
    answers = [
        httpx.Response(404, text=echo),
        httpx.Response(200, json={"error_code": 403001, "message": echo, "detail": [echo]}),
        httpx.Response(409, json={"message": echo}),
        httpx.Response(200, json={"error_code": 400002, "error": {"message": echo}}),
    ]
    seen: list[BatchrunError] = []

    async def main() -> None:
        for answer in answers:
            async with client_for(Recorder(answer), retry=RetryPolicy(max_attempts=1)) as client:
                for call in (client.status, client.result, client.cancel):
                    with pytest.raises(BatchrunError) as info:
                        await call("r")
                    seen.append(info.value)

    run(main)
    for error in seen:
        assert TOKEN[:8] not in f"{error} {error.message} {error.args!r} {vars(error)!r}"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx.Response(404, json={"error_code": 404001, "message": "gone"}), RequestNotFoundError),
        (httpx.Response(403, json={"error_code": 403001}), ForbiddenError),
        (httpx.Response(200, json={"error_code": 403003}), ForbiddenError),
        (httpx.Response(404, text="Not Found"), UnexpectedAnswerError),
        (httpx.Response(404), UnexpectedAnswerError),
        (httpx.Response(405, text="Method Not Allowed"), UnexpectedAnswerError),
        (httpx.Response(400, json={"error_code": 400002, "message": "top up"}), InsufficientBalanceError),
        (httpx.Response(200, json={"error_code": 400002}), InsufficientBalanceError),
    ],
)
def test_poll_refusals_say_whether_the_request_is_gone(answer: httpx.Response, expected: type) -> None:
    """status/result/cancel raise RequestNotFound/Forbidden only for published codes; odd 4xx are UnexpectedAnswerError."""

    async def main() -> None:
        for endpoint in ("status", "result", "cancel"):
            rec = Recorder(answer)
            async with client_for(rec) as client:
                with pytest.raises(expected) as info:
                    await getattr(client, endpoint)("r")
                assert type(info.value) is expected
                assert info.value.status_code == answer.status_code
            assert len(rec.requests) == 1 and rec.slept == []

    run(main)


def test_relative_output_url_is_resolved_against_the_base_url() -> None:
    """A result naming its file as /files/rel.mp4 yields a downloadable URL on the API host."""
    rec = Recorder(ok(request_id="r", status="completed", output={"video": "/files/rel.mp4"}))

    async def main() -> None:
        async with client_for(rec) as client:
            report = await client.result("r")
            assert report.output_urls == (f"{BASE}/files/rel.mp4",)

    run(main)


def test_retry_after_on_503_is_honoured() -> None:
    """A 503 with Retry-After waits as long as the server asked (like a 429), then polls again."""
    rec = Recorder(httpx.Response(503, headers={"Retry-After": "17"}), ok(request_id="r", status="in_queue"))

    async def main() -> None:
        async with client_for(rec) as client:
            assert (await client.status("r")).status == "queued"

    run(main)
    assert rec.slept == [17]


def test_http_like_error_code_in_a_200_is_retried() -> None:
    """A 200 carrying error_code 429 or 500 is retried instead of failing the job."""
    rec = Recorder(ok(error_code=429, message="slow"), ok(error_code=500), ok(request_id="r", status="in_progress"))

    async def main() -> None:
        async with client_for(rec) as client:
            assert (await client.result("r")).status == "running"

    run(main)
    assert len(rec.requests) == 3


@pytest.mark.parametrize(("base", "warned"), [("http://api.localhost:8000", True), ("http://10.0.0.5", True),
                                              ("http://127.0.0.1:9", False), ("https://api.test", False)])
def test_plain_http_to_another_machine_is_warned_about(base: str, warned: bool) -> None:
    """The token over plain http is allowed (a test server), but said, unless it stays on this
    machine; a *.localhost name may not (a resolver may send it elsewhere)."""
    from batchrun.api.client import plain_http_warning

    assert (plain_http_warning(base) is not None) is warned
    RunComfyClient(base, TOKEN)


def test_206_to_a_plain_get_is_accepted(tmp_path: Path) -> None:
    """A file host that always answers 206 still delivers the file instead of retrying forever."""
    calls: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("range"))
        return httpx.Response(206, headers={"Content-Range": "bytes 0-9/10"}, content=b"0123456789")

    got = download(handler, tmp_path / "clip.mp4")
    assert (tmp_path / "clip.mp4").read_bytes() == b"0123456789" and got.size == 10  # type: ignore[attr-defined]
    assert calls == [None]
    calls.clear()
    bare = download(lambda r: httpx.Response(206, content=b"abc"), tmp_path / "bare.mp4")
    assert bare.size == 3  # type: ignore[attr-defined]


def test_206_resume_from_a_full_restart_is_accepted(tmp_path: Path) -> None:
    """An empty .part is resumed by a 206 that starts at byte 0."""
    dest = tmp_path / "clip.mp4"
    left_part(dest, b"")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(206, headers={"Content-Range": "bytes 0-4/5"}, content=b"01234")

    download(handler, dest)
    assert dest.read_bytes() == b"01234"


def test_206_slice_to_a_plain_get_fails_at_once(tmp_path: Path) -> None:
    """A plain GET answered with a slice from the middle fails once, leaving nothing, instead of looping."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(206, headers={"Content-Range": "bytes 5-9/10"}, content=b"56789")

    with pytest.raises(PermanentDownloadError, match="part of the file"):
        download(handler, tmp_path / "clip.mp4")
    assert len(seen) == 1 and list(tmp_path.glob("clip.mp4*")) == []


def test_file_host_retry_after_is_honoured(tmp_path: Path) -> None:
    """A CDN answering 503 with Retry-After is waited for as long as it asked."""
    answers = [httpx.Response(503, headers={"Retry-After": "11"}), httpx.Response(200, content=b"ok")]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def main() -> None:
        async with Downloader(transport=httpx.MockTransport(lambda r: answers.pop(0)), sleep=sleep, retry=POLICY) as d:
            await d.fetch("https://cdn.test/clip.mp4", tmp_path / "a.mp4")

    anyio.run(main)
    assert slept == [11] and (tmp_path / "a.mp4").read_bytes() == b"ok"


def test_files_on_the_apis_own_origin_get_the_token_and_no_other_host_does(tmp_path: Path) -> None:
    """A result file the API host serves itself is fetched with the token (like every request to
    the API); a CDN, another port, or a redirect away from the API host never sees it."""
    seen: dict[str, str | None] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen[str(request.url)] = request.headers.get("authorization")
        if request.url.path == "/moved.mp4":
            return httpx.Response(302, headers={"Location": "http://cdn.test/v.mp4"})
        return httpx.Response(200, content=b"\x00\x00\x00\x18ftypmp42")

    async def main() -> None:
        async with Downloader(transport=httpx.MockTransport(handler), api_credentials=("http://api.test:8080", TOKEN)) as d:
            for i, url in enumerate(["http://api.test:8080/files/v.mp4", "http://api.test:9090/v.mp4",
                                     "https://cdn.test/v.mp4", "http://api.test:8080/moved.mp4"]):
                await d.fetch(url, tmp_path / f"{i}.mp4")

    anyio.run(main)
    assert seen == {"http://api.test:8080/files/v.mp4": f"Bearer {TOKEN}", "http://api.test:9090/v.mp4": None,
                    "https://cdn.test/v.mp4": None, "http://api.test:8080/moved.mp4": f"Bearer {TOKEN}",
                    "http://cdn.test/v.mp4": None}


def test_the_api_client_keeps_no_cookies() -> None:
    """A Set-Cookie from the API never comes back on a later request: the client carries no state."""
    rec = Recorder(lambda r: httpx.Response(200, json={"request_id": "r1", "status": "in_queue"},
                                            headers={"Set-Cookie": "session=abc; Path=/"}))

    async def main() -> None:
        async with client_for(rec) as client:
            await client.result("r1")
            await client.result("r1")

    anyio.run(main)
    assert len(rec.requests) == 2 and "cookie" not in rec.requests[1].headers


def test_no_more_requests_in_flight_than_the_client_has_connections() -> None:
    """50 polls at once through a client of 3 connections: at most 3 are at the server at any moment,
    and every poll still gets its answer (the rest wait their turn in the client)."""
    in_flight = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        import anyio.lowlevel

        await anyio.lowlevel.checkpoint()  # let the other polls try to get in meanwhile
        await anyio.lowlevel.checkpoint()
        in_flight -= 1
        return httpx.Response(200, json={"request_id": request.url.path.split("/")[3], "status": "in_progress"})

    answers: list[str] = []

    async def main() -> None:
        async with RunComfyClient(BASE, TOKEN, max_connections=3, transport=httpx.MockTransport(handler)) as client:

            async def poll(index: int) -> None:
                answers.append((await client.result(f"r{index}")).request_id)

            async with anyio.create_task_group() as tasks:
                for index in range(50):
                    tasks.start_soon(poll, index)

    anyio.run(main)
    assert peak == 3
    assert sorted(answers) == sorted(f"r{index}" for index in range(50))


def test_a_submit_never_waits_behind_polls() -> None:
    """Every lane busy with a slow poll: a submit still goes out at once (a wait after the job was
    marked `submitting` would leave it in doubt if the run were stopped then)."""
    import anyio.lowlevel

    release = anyio.Event()
    submitted = anyio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            submitted.set()
            return httpx.Response(200, json={"request_id": "new"})
        await release.wait()  # the poll hangs until the submit went through
        return httpx.Response(200, json={"request_id": "r1", "status": "in_progress"})

    async def main() -> str:
        async with RunComfyClient(BASE, TOKEN, max_connections=1, transport=httpx.MockTransport(handler)) as client:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(client.result, "r1")
                await anyio.lowlevel.checkpoint()  # the poll holds the only lane
                with anyio.fail_after(5):
                    submission = await client.submit("kling/kling-3.0/standard/image-to-video", {"prompt": "x"})
                release.set()
            return submission.request_id

    assert anyio.run(main) == "new"


@pytest.mark.parametrize(("odd", "segment"), [
    (".", "%2E"), ("..", "%2E%2E"), (" padded-1 ", "%20padded-1%20"), ("a/../b", "a%2F..%2Fb"),
])
def test_a_request_id_is_sent_exactly_as_given_and_stays_one_path_segment(odd: str, segment: str) -> None:
    """Ids are used exactly as RunComfy gave them (whitespace kept), percent-encoded into one path
    segment: `.` or `..` cannot be resolved away into another URL, a slash cannot add a segment."""
    rec = Recorder(ok(request_id=odd, status="in_progress"))

    async def main() -> None:
        async with client_for(rec) as client:
            await client.result(odd)

    anyio.run(main)
    (request,) = rec.requests
    assert request.url.raw_path == f"/v1/requests/{segment}/result".encode()


def test_a_submit_answer_keeps_its_request_id_exactly() -> None:
    """A request id with spaces around it is kept as given: stripping it would poll another job."""
    rec = Recorder(ok(request_id=" padded-1 "))

    async def main() -> str:
        async with client_for(rec) as client:
            return (await client.submit("m", {"prompt": "x"})).request_id

    assert anyio.run(main) == " padded-1 "


def test_an_empty_cancel_answer_is_not_retried_and_says_nothing() -> None:
    """A 204 (or an empty 200) to a cancel is an answer with no outcome, not a failure to retry;
    an empty status answer still is one (a poll must learn the state)."""
    rec = Recorder(httpx.Response(204), httpx.Response(200, content=b""), ok(request_id="r", status="in_queue"))

    async def main() -> None:
        async with client_for(rec) as client:
            report = await client.cancel("r")
            assert (report.cancelled, report.outcome, report.status) == (False, None, None)
            assert (await client.status("r")).status == "queued"

    run(main)
    assert [r.url.path.rsplit("/", 1)[1] for r in rec.requests] == ["cancel", "status", "status"]
    assert rec.slept == [1]


def test_a_bare_404_on_submit_says_the_model_is_unknown() -> None:
    """A 404 without a code on POST /v1/models/{id} names the model, not a request id."""
    rec = Recorder(httpx.Response(404, text="Not Found"))

    async def main() -> None:
        async with client_for(rec) as client:
            with pytest.raises(UnknownModelError) as info:
                await client.submit("kling/nope", {"prompt": "x"})
            assert info.value.message.startswith("RunComfy does not know this model id")
            assert "request id" not in info.value.message and "HTTP 404" in info.value.message

    run(main)


def test_an_answer_that_cannot_be_decoded_is_retried_or_in_doubt_never_a_crash() -> None:
    """A body labelled gzip that is not gzip: a poll is retried; a submit may have created the
    job, so it is in doubt (SubmitOutcomeUnknown), never a traceback."""
    def bad(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(b'{"request_id": "r", "status": "in_queue"}'),
                              headers={"Content-Encoding": "gzip"})

    rec = Recorder(bad, bad, ok(request_id="r", status="in_queue"))

    async def main() -> None:
        async with client_for(rec) as client:
            assert (await client.status("r")).status == "queued"
        rec.answers = [bad]
        async with client_for(rec) as client:
            with pytest.raises(SubmitOutcomeUnknown):
                await client.submit("m", {"prompt": "x"})

    run(main)
    assert rec.slept == [1, 2]


def test_a_redirected_poll_is_followed_with_the_token_only_on_the_same_origin() -> None:
    """`/result` answering 307 to `/result/` is followed (a completed job is not failed for an
    'unexpected answer'); a redirect to another host gets no Authorization header."""
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/requests/r-1/result":
            return httpx.Response(307, headers={"location": "/v1/requests/r-1/result/"})
        if request.url.path == "/v1/requests/r-1/status":
            return httpx.Response(302, headers={"location": "https://elsewhere.test/s"})
        return ok(request_id="r-1", status="completed", output={"video": "https://cdn.test/v.mp4"})

    rec = Recorder(answer)

    async def main() -> None:
        async with client_for(rec) as client:
            report = await client.result("r-1")
            assert report.status == "completed" and report.output_urls == ("https://cdn.test/v.mp4",)
            await client.status("r-1")

    run(main)
    followed, elsewhere = rec.requests[1], rec.requests[3]
    assert followed.url.path == "/v1/requests/r-1/result/" and followed.headers["authorization"] == f"Bearer {TOKEN}"
    assert elsewhere.url.host == "elsewhere.test" and "authorization" not in elsewhere.headers


def test_a_submit_waits_longer_for_its_answer_than_a_poll() -> None:
    """A submit still unanswered when its read timeout ends is a job in doubt (held in `submitting`),
    so a slow but working RunComfy gets 120 s to answer it; a poll keeps the client's 30 s."""
    rec = Recorder(lambda request: ok(request_id="r-1", status="in_queue"))

    async def main() -> None:
        async with client_for(rec) as client:
            await client.submit("kling/kling-3.0/pro/text-to-video", {"prompt": "a cat"})
            await client.status("r-1")

    run(main)
    submit, poll = (request.extensions["timeout"] for request in rec.requests)
    assert submit["read"] == 120.0 and poll["read"] == 30.0
    assert submit["connect"] == poll["connect"] == 30.0


@pytest.mark.parametrize(("base", "says"), [("https://model-api.runcomfy.net/v1", "use https://model-api.runcomfy.net"),
                                            ("https://model-api.runcomfy.net/v1/", "must not end in /v1"),
                                            ("https://api.test/?x=1", "query"), ("https://api.test/#top", "fragment"),
                                            ("http://xn--/", "must be an http")])
def test_a_base_url_that_would_send_every_request_astray_is_refused(base: str, says: str) -> None:
    """`RUNCOMFY_BASE_URL=.../v1` would make every path /v1/v1/... and fail every job as unknown:
    a one-line ConfigError before anything is sent."""
    with pytest.raises(ConfigError, match=says.replace("?", "")):
        RunComfyClient(base, TOKEN)


@pytest.mark.parametrize("status_code", [500, 502, 404])
def test_a_failed_job_told_with_an_error_status_is_the_jobs_outcome(status_code: int) -> None:
    """A server that answers a failed job's /result with an error status but a body about this
    very request ({"request_id": ..., "status": "failed"}) has told the outcome: no retry."""
    rec = Recorder(httpx.Response(status_code, json={"request_id": "r-9", "status": "failed",
                                                     "error_message": "content policy"}))

    async def main() -> object:
        async with client_for(rec) as client:
            return await client.result("r-9")

    report = run(main)
    assert report.status == "failed" and "content policy" in report.error  # type: ignore[attr-defined]
    assert len(rec.requests) == 1 and rec.slept == []


def test_an_error_status_that_does_not_clearly_tell_a_failure_is_still_retried() -> None:
    """Not the job's outcome, so asked again: a gateway's 502 `{"status": "failed"}` without this
    request's id, or with another id; a 429 (a rate limit, whatever its body says); an error
    status saying `completed` (no output to trust: a paid job is never failed for it)."""
    rec = Recorder(httpx.Response(502, json={"status": "failed", "message": "upstream"}),
                   httpx.Response(502, json={"request_id": "other", "status": "failed"}),
                   httpx.Response(429, json={"request_id": "r-9", "status": "failed", "message": "slow down"}),
                   httpx.Response(500, json={"request_id": "r-9", "status": "completed", "error_code": 500001}),
                   ok(request_id="r-9", status="in_progress"))

    async def main() -> object:
        async with client_for(rec, retry=RetryPolicy(max_attempts=6, base=1, cap=4, max_elapsed=None,
                                                      jitter=False)) as client:
            return await client.result("r-9")

    report = run(main)
    assert report.status == "running" and len(rec.requests) == 5  # type: ignore[attr-defined]
