"""Classifying RunComfy's answers and parsing them into values (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from batchrun.api.responses import (
    MAX_JSON_DEPTH,
    SubmitOutcomeUnknown,
    UnexpectedAnswerError,
    classify_error,
    collect_output_urls,
    decode_body,
    normalize_status,
    parse_cancel,
    parse_result,
    parse_retry_after,
    parse_status,
    parse_submission,
    summarize_detail,
)
from batchrun.errors import (
    AuthError,
    ForbiddenError,
    InsufficientBalanceError,
    PermanentApiError,
    RateLimitedError,
    RequestNotFoundError,
    TransientApiError,
    UnknownModelError,
    ValidationRejectedError,
)


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (400, body(error_code=400001, error_message="no such model"), UnknownModelError),
        (400, body(error_code=400002, message="top up"), InsufficientBalanceError),
        (400, body(error_code=400004), AuthError),
        (401, body(error_code=401001), AuthError),
        (401, b"", AuthError),
        (403, body(error_code=403001), ForbiddenError),
        (403, body(error_code=403003), ForbiddenError),
        (403, b"nope", ForbiddenError),
        (404, body(error_code=404001), RequestNotFoundError),
        (404, b"", RequestNotFoundError),
        (422, body(error_code=422001, detail=[]), ValidationRejectedError),
        (422, body(detail="bad"), ValidationRejectedError),
        (429, b"", RateLimitedError),
        (500, body(error_code=500001), TransientApiError),
        (503, b"", TransientApiError),
        (418, body(message="teapot"), PermanentApiError),
        (400, body(error_code=499999), PermanentApiError),
    ],
)
def test_error_table(status: int, payload: bytes, expected: type) -> None:
    """Every published code and HTTP status leads to the documented reaction."""
    error = classify_error(status, {}, payload)
    assert type(error) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (400002, InsufficientBalanceError),
        (401001, AuthError),
        (500001, TransientApiError),
        (422001, ValidationRejectedError),
        (503123, TransientApiError),
        (4, PermanentApiError),
    ],
)
def test_error_code_on_http_200_is_an_error(code: int, expected: type) -> None:
    """An HTTP 200 carrying error_code is not mistaken for success."""
    error = classify_error(200, {}, body(error_code=code, error_message="oops"))
    assert type(error) is expected
    assert error.error_code == code  # type: ignore[union-attr]


def test_good_answers_are_not_errors() -> None:
    """Plain 2xx answers (even with error_code 0 or null) pass."""
    assert classify_error(200, {}, body(request_id="r", status="in_queue")) is None
    assert classify_error(200, {}, body(request_id="r", error_code=None)) is None
    assert classify_error(202, {}, body(request_id="r", error_code=0)) is None
    assert classify_error(200, {}, b"<html>ok</html>") is None


def test_message_comes_from_error_message_or_message() -> None:
    """The server's explanation reaches the user in one line."""
    a = classify_error(400, {}, body(error_code=400001, error_message="model x\nnot found"))
    b = classify_error(400, {}, body(error_code=400001, message="unknown model"))
    assert "model x not found" in str(a) and "\n" not in str(a)
    assert "unknown model" in str(b) and "400001" in str(b)


def test_validation_detail_summarised_in_one_line() -> None:
    """A 422 shows every rejected field in one readable line."""
    detail = [
        {"loc": ["body", "duration"], "msg": "must be <= 15", "type": "x"},
        {"loc": ["body", "prompt"], "msg": "field required"},
    ]
    error = classify_error(422, {}, body(error_code=422001, detail=detail))
    assert isinstance(error, ValidationRejectedError)
    assert "duration: must be <= 15; prompt: field required" in error.message
    assert error.detail == detail
    assert summarize_detail({"duration": "too long"}) == "duration: too long"


def test_html_error_page_is_handled() -> None:
    """A proxy's HTML 502 page becomes a short transient error, not a crash."""
    page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502</h1>" + b"x" * 5000
    error = classify_error(502, {"Content-Type": "text/html"}, page)
    assert isinstance(error, TransientApiError)
    assert "502 Bad Gateway" in error.message and len(error.message) < 600


def test_retry_after_seconds_and_http_date() -> None:
    """Retry-After is read in both of its forms."""
    error = classify_error(429, {"Retry-After": "7"}, b"")
    assert isinstance(error, RateLimitedError) and error.retry_after == 7
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    dated = classify_error(429, {"retry-after": "Thu, 01 Jan 2026 12:00:30 GMT"}, b"", now=now)
    assert isinstance(dated, RateLimitedError) and dated.retry_after == 30
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0
    assert classify_error(429, {}, b"").retry_after is None  # type: ignore[union-attr]


def test_token_is_scrubbed_from_messages() -> None:
    """A server echoing the token back never puts it into an error message."""
    error = classify_error(
        401, {}, body(error_code=401001, message="bad token sk-SECRET in Bearer sk-SECRET"), secret="sk-SECRET"
    )
    assert error is not None and "sk-SECRET" not in error.message


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("in_queue", "queued"),
        ("queued", "queued"),
        ("in_progress", "running"),
        ("running", "running"),
        ("completed", "completed"),
        ("succeeded", "completed"),
        ("cancelled", "cancelled"),
        ("canceled", "cancelled"),
        ("failed", "failed"),
        ("error", "failed"),
        ("COMPLETED", "completed"),
        ("warming_up", "running"),
        (None, "running"),
    ],
)
def test_status_words_are_normalised(word: object, expected: str) -> None:
    """Every spelling RunComfy may use maps onto five words; unknown ones count as still running."""
    assert normalize_status(word) == expected


def test_unknown_status_keeps_the_raw_word() -> None:
    """An unexpected status word is kept for the record, while the job keeps being polled."""
    report = parse_status({"request_id": "r1", "status": "warming_up"}, "r1")
    assert report.status == "running" and report.raw_status == "warming_up"
    assert not report.is_terminal


def test_status_with_queue_position() -> None:
    """The queue position is reported while queued."""
    report = parse_status({"request_id": "r1", "status": "in_queue", "queue_position": "3"}, "r1")
    assert report.status == "queued" and report.queue_position == 3


def test_every_output_url_collected_in_order_without_duplicates() -> None:
    """No result file is missed, whatever key RunComfy puts it under."""
    output = {
        "video": "https://cdn.example/a.mp4",
        "videos": ["https://cdn.example/a.mp4", "https://cdn.example/b.mp4"],
        "image": "https://cdn.example/c.png",
        "images": ["https://cdn.example/d.png", "not a url", 7],
        "thumbnail": "https://cdn.example/e.jpg",
        "extra": [{"url": "https://cdn.example/f.bin"}],
        "seed": 42,
        "note": "done",
    }
    assert collect_output_urls(output) == (
        "https://cdn.example/a.mp4",
        "https://cdn.example/b.mp4",
        "https://cdn.example/c.png",
        "https://cdn.example/d.png",
        "https://cdn.example/e.jpg",
        "https://cdn.example/f.bin",
    )
    assert collect_output_urls("https://cdn.example/x.mp4") == ("https://cdn.example/x.mp4",)
    assert collect_output_urls(None) == ()


def test_result_completed_failed_and_unfinished() -> None:
    """A result answer says whether to download, fail the job or keep polling."""
    done = parse_result(
        {
            "request_id": "r1",
            "status": "succeeded",
            "output": {"video": "https://cdn.example/a.mp4"},
            "created_at": "2026-01-01T00:00:00Z",
            "finished_at": 1767225660,
        },
        "r1",
    )
    assert done.status == "completed" and done.output_urls == ("https://cdn.example/a.mp4",)
    assert done.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert done.finished_at == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)
    assert done.raw["status"] == "succeeded"
    failed = parse_result({"request_id": "r1", "status": "failed", "error": {"message": "nsfw"}}, "r1")
    assert failed.status == "failed" and failed.error == "nsfw"
    pending = parse_result({"request_id": "r1", "status": "in_progress"}, "r1")
    assert pending.status == "running" and pending.output_urls == () and not pending.is_terminal


def test_result_without_status_word() -> None:
    """An answer with files but no status word counts as completed."""
    report = parse_result({"output": {"video": "https://cdn.example/a.mp4"}}, "r9")
    assert report.status == "completed" and report.request_id == "r9" and report.raw_status is None


def test_non_object_answer_is_transient() -> None:
    """A garbled poll answer is retried, not taken as a state."""
    with pytest.raises(TransientApiError):
        parse_result(["nope"], "r1")


def test_submission_requires_request_id() -> None:
    """A 2xx submit answer without request_id is an unknown outcome (the job may exist)."""
    sub = parse_submission({"request_id": "abc", "status_url": "https://x/s"})
    assert sub.request_id == "abc" and sub.status_url == "https://x/s" and sub.cancel_url is None
    for data in ({}, {"request_id": ""}, {"request_id": None}, [], None):
        with pytest.raises(SubmitOutcomeUnknown):
            parse_submission(data)


def test_submit_outcome_unknown_is_not_transient() -> None:
    """A lost submit answer is never retried automatically by the policy."""
    assert not isinstance(SubmitOutcomeUnknown("x"), TransientApiError)


def test_cancel_outcomes() -> None:
    """Cancel reports whether RunComfy actually cancelled (nothing billed) or the job will run on."""
    yes = parse_cancel({"request_id": "r", "status": "cancelled", "outcome": "cancelled"}, "r")
    no = parse_cancel({"request_id": "r", "status": "in_progress", "outcome": "not_cancellable"}, "r")
    implied = parse_cancel({"request_id": "r", "status": "canceled"}, "r")
    assert yes.cancelled and not no.cancelled and implied.cancelled
    assert no.status == "running" and no.outcome == "not_cancellable"


# --- tolerance for an independent implementation of the API ------------------------------------


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("success", "completed"),
        ("Successful", "completed"),
        ("COMPLETE", "completed"),
        ("done", "completed"),
        ("finished", "completed"),
        ("error", "failed"),
        ("Errored", "failed"),
        ("timeout", "failed"),
        ("timed_out", "failed"),
        ("expired", "failed"),
        ("rejected", "failed"),
        ("aborted", "failed"),
        ("CANCELED", "cancelled"),
        ("Cancelled", "cancelled"),
        ("waiting", "queued"),
        ("PENDING", "queued"),
        ("In Queue", "queued"),
        ("processing", "running"),
        ("started", "running"),
        ("in-progress", "running"),
    ],
)
def test_status_synonyms_are_understood(word: str, expected: str) -> None:
    """A server spelling 'finished', 'Timed_Out' or 'waiting' still moves the job to the right state."""
    assert normalize_status(word) == expected


def test_unknown_word_with_output_counts_as_completed() -> None:
    """A result with files is downloaded even when its status word is new to batchrun."""
    report = parse_result({"status": "ready", "output": {"video": "https://cdn.example/a.mp4"}}, "r1")
    assert report.status == "completed" and report.raw_status == "ready"
    assert report.output_urls == ("https://cdn.example/a.mp4",)


def test_unknown_word_with_error_counts_as_failed() -> None:
    """A result carrying an error under an unknown status word fails the job instead of polling forever."""
    report = parse_result({"status": "nsfw_blocked", "error": "content policy"}, "r1")
    assert report.status == "failed" and report.error == "content policy"
    assert report.raw_status == "nsfw_blocked"
    status = parse_status({"status": "nsfw_blocked", "error": {"message": "content policy"}}, "r1")
    assert status.status == "failed" and status.raw_status == "nsfw_blocked"


def test_unknown_word_without_output_or_error_keeps_polling() -> None:
    """An unknown word with nothing else to go on is still polled (and an 'error: false' is no error)."""
    report = parse_result({"status": "warming_up", "error": False}, "r1")
    assert report.status == "running" and report.error is None and not report.is_terminal


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (429, RateLimitedError),
        (500, TransientApiError),
        (503, TransientApiError),
        (401, AuthError),
        (402, InsufficientBalanceError),
        (404, RequestNotFoundError),
        (418, PermanentApiError),
    ],
)
def test_http_status_sent_as_error_code_is_classified_like_that_status(code: int, expected: type) -> None:
    """A 200 carrying error_code 429 or 500 is retried, and 401 stops the run, as the HTTP status would."""
    error = classify_error(200, {}, body(error_code=code, message="oops"))
    assert type(error) is expected
    assert error.error_code == code  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "payload", "expected"),
    [
        (404, body(error_code=404001), RequestNotFoundError),
        (403, body(error_code=403001), ForbiddenError),
        (403, body(error_code=403003), ForbiddenError),
        (400, body(error_code=400002), InsufficientBalanceError),
        (200, body(error_code=400002), InsufficientBalanceError),
        (402, b"", InsufficientBalanceError),
        (401, b"", AuthError),
        (429, b"", RateLimitedError),
        (404, b"", UnexpectedAnswerError),
        (404, b"<html>Not Found</html>", UnexpectedAnswerError),
        (403, b"", UnexpectedAnswerError),
        (410, body(message="gone"), UnexpectedAnswerError),
        (400, body(error_code=404002), UnexpectedAnswerError),
        (200, body(error_code=404), UnexpectedAnswerError),
        (302, b"", UnexpectedAnswerError),
    ],
)
def test_poll_refusals_tell_gone_from_odd(status: int, payload: bytes, expected: type) -> None:
    """Only a published code fails a job as gone; a bare 404 or odd 4xx on a poll is an UnexpectedAnswerError."""
    error = classify_error(status, {}, payload, poll=True)
    assert type(error) is expected
    assert error.status_code == status  # type: ignore[union-attr]


def test_retry_after_is_read_on_5xx() -> None:
    """A 503 that says when to come back is waited for like a 429."""
    error = classify_error(503, {"Retry-After": "9"}, b"")
    assert isinstance(error, TransientApiError) and error.retry_after == 9  # type: ignore[attr-defined]
    coded = classify_error(500, {"retry-after": "4"}, body(error_code=500001))
    assert coded.retry_after == 4  # type: ignore[union-attr]


def test_a_temporary_failure_says_what_happened_not_what_will_happen() -> None:
    """The message of a 5xx is shown once retries are spent too (a cancel that kept failing): it
    must not promise another try."""
    error = classify_error(200, {}, body(error_code=500001, error_message="degraded"))
    assert error.message == "RunComfy is temporarily unavailable: degraded (HTTP 200, error_code 500001)"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "payload"),
    [(429, b""), (429, body(message="Too many requests (HTTP 429)")), (429, body(error_code=429))],
)
def test_message_names_the_status_once(status: int, payload: bytes) -> None:
    """Error lines read cleanly: '(HTTP 429)' appears once, not twice."""
    error = classify_error(status, {}, payload)
    assert error is not None and error.message.count("HTTP 429") == 1, error.message


def test_token_cut_in_half_by_the_length_limit_never_leaks() -> None:
    """A long echoed message is shortened after the token is removed, so no prefix of it survives."""
    secret = "sk-VERYSECRETTOKEN-0123456789"
    for pad in range(400, 500):
        error = classify_error(400, {}, body(message="x" * pad + secret), secret=secret)
        assert error is not None and "sk-VERYSEC" not in error.message, pad


def test_relative_output_urls_are_resolved_against_the_base() -> None:
    """A result that names its file by path (/files/x.mp4) is still downloaded, from the API host."""
    output = {"video": "/files/rel.mp4", "images": ["/files/a.png"], "note": "/not/a/link"}
    assert collect_output_urls(output, base_url="http://127.0.0.1:8000") == (
        "http://127.0.0.1:8000/files/rel.mp4",
        "http://127.0.0.1:8000/files/a.png",
    )
    report = parse_result({"status": "completed", "output": {"video": "/f/v.mp4"}}, "r", base_url="https://api.test/")
    assert report.output_urls == ("https://api.test/f/v.mp4",)


@pytest.mark.parametrize(("written", "expected"), [
    ("files/rel.mp4", ("https://api.test/files/rel.mp4",)),
    ("rel.mp4?sig=1", ("https://api.test/rel.mp4?sig=1",)),
    ("//cdn.test/v.mp4", ("https://cdn.test/v.mp4",)),
    ("none", ()), ("pending", ()), ("s3://bucket/v.mp4", ()), ("data:video/mp4;base64,AAAA", ()), ("a b.mp4", ()),
])
def test_a_path_without_its_leading_slash_is_still_the_file(written: str, expected: tuple[str, ...]) -> None:
    """`"video": "files/rel.mp4"` names a file on the API's host as surely as `/files/rel.mp4`: the
    paid-for video is downloaded instead of the job failing for "no output URL". A word (`none`)
    or another scheme is never taken for a path."""
    assert collect_output_urls({"video": written}, base_url="https://api.test") == expected


def test_url_objects_nested_in_documented_keys_are_collected_video_first() -> None:
    """Files given as {'url': ...} or {'video': {'url': ...}} objects are all found, the video first."""
    output = {
        "meta": {"preview": "https://cdn.example/p.jpg"},
        "images": [{"image": {"url": "https://cdn.example/i.png"}}],
        "videos": [{"url": "https://cdn.example/w.mp4"}, {"video": {"url": "https://cdn.example/x.mp4"}}],
        "video": {"url": "https://cdn.example/v.mp4", "thumbnail": {"url": "https://cdn.example/t.jpg"}},
    }
    assert collect_output_urls(output) == (
        "https://cdn.example/v.mp4",
        "https://cdn.example/t.jpg",
        "https://cdn.example/w.mp4",
        "https://cdn.example/x.mp4",
        "https://cdn.example/i.png",
        "https://cdn.example/p.jpg",
    )


def test_json_with_a_byte_order_mark_or_a_declared_charset_is_read() -> None:
    """A UTF-8 BOM, or a latin-1 body that says so, is still the answer (a lost submit answer otherwise)."""
    assert decode_body(b'\xef\xbb\xbf{"request_id": "req-1"}') == {"request_id": "req-1"}
    latin = '{"request_id": "r\u00e9q"}'.encode("latin-1")
    assert decode_body(latin) is None  # not UTF-8, and no charset said otherwise
    assert decode_body(latin, "iso-8859-1") == {"request_id": "r\u00e9q"}
    assert decode_body(latin, "no-such-charset") is None


def test_json_nested_past_any_real_answer_counts_as_not_json() -> None:
    """200,000 brackets must not end the run with a RecursionError: the body is simply not an answer."""
    assert decode_body(b"[" * 200_000 + b"]" * 200_000) is None
    assert decode_body("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)) is None
    assert decode_body("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH) is not None


def test_a_frameworks_detail_wrapper_is_read_like_the_error_it_wraps() -> None:
    """{"detail": {"error_code": 400002, ...}} is the published error inside a wrapper: it stops
    submitting like 400002 does; a bare {"detail": "..."} gives the server's reason."""
    wrapped = body(detail={"error_code": 400002, "error_message": "Insufficient balance, top up"})
    error = classify_error(400, {}, wrapped)
    assert isinstance(error, InsufficientBalanceError) and "Insufficient balance" in error.message
    assert isinstance(classify_error(400, {}, body(detail={"error_code": 401001})), AuthError)
    error = classify_error(400, {}, body(detail="Unknown model id: kling/x not enabled for this account"))
    assert isinstance(error, PermanentApiError) and "not enabled for this account" in error.message
    error = classify_error(400, {}, body(detail=[{"loc": ["body", "prompt"], "msg": "too long"}]))
    assert "prompt: too long" in error.message
