"""Reading RunComfy's answers: error classification and parsing into frozen values. Pure.

``classify_error(status_code, headers, body)`` looks at EVERY answer (a 200 may carry an
``error_code``) and returns the exception to raise, or None when the answer is good. Published
codes win over the HTTP status; a 3-digit ``error_code`` (100-599) on a 2xx or plain 400 answer
counts as that HTTP status; other unknown codes fall back to the HTTP status, then to the code's
leading digits (``5xxxxx`` -> transient ...). With ``poll=True`` (status, result, cancel: calls
about one request id) a refusal WITHOUT a published code is an ``UnexpectedAnswerError``, so
"RunComfy says this id is gone" (404001, 403001/403003) stays distinct from "an odd answer".
``Retry-After`` is read on 429 and on every transient answer (408, 5xx). Messages are one line
and never carry the token (pass ``secret=`` to scrub anything the server echoed back).

``parse_submission/parse_status/parse_result/parse_cancel`` turn a decoded JSON answer into
``Submission``/``StatusReport``/``ResultReport``/``CancelReport``. Status words (any case, ``-``
or space for ``_``) are normalised to ``queued``/``running``/``completed``/``cancelled``/
``failed`` through a table of synonyms; a word still unknown counts as ``completed`` when the
answer holds output URLs, ``failed`` when it holds an ``error``, else still ``running``; the word
as sent is always kept in ``raw_status``. Relative output URLs (``/files/x.mp4``) are resolved
against ``base_url`` when given.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

from batchrun import protocol
from batchrun.errors import (
    ApiError,
    AuthError,
    BatchrunError,
    ForbiddenError,
    InsufficientBalanceError,
    PermanentApiError,
    RateLimitedError,
    RequestNotFoundError,
    TransientApiError,
    UnknownModelError,
    ValidationRejectedError,
)

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
CANCELLED = "cancelled"
FAILED = "failed"
TERMINAL = frozenset({COMPLETED, CANCELLED, FAILED})

_MAX_MESSAGE = 300

# Status words beyond the documented ones (protocol.py), all compared after _status_key().
_SYNONYMS: dict[str, frozenset[str]] = {
    QUEUED: protocol.QUEUED_STATUSES
    | {"queued", "pending", "waiting", "in_queue", "inqueue", "enqueued", "submitted", "scheduled"},
    RUNNING: protocol.RUNNING_STATUSES
    | {"processing", "running", "in_progress", "inprogress", "started", "generating"},
    COMPLETED: protocol.SUCCESS_STATUSES
    | {"completed", "complete", "succeeded", "success", "successful", "done", "finished"},
    CANCELLED: protocol.CANCELLED_STATUSES
    | {"cancelled", "canceled", "cancel", "cancelled_by_user", "canceled_by_user", "user_cancelled",
       "user_canceled"},
    FAILED: protocol.FAILED_STATUSES
    | {"failed", "failure", "fail", "error", "errored", "timeout", "timed_out", "timedout", "expired",
       "rejected", "aborted"},
}
_STATUS_OF: dict[str, str] = {word: status for status, words in _SYNONYMS.items() for word in words}

#: the published error codes: only these say for sure what happened to a request id
PUBLISHED_CODES = frozenset(
    {
        protocol.ERR_UNKNOWN_MODEL,
        protocol.ERR_INSUFFICIENT_BALANCE,
        protocol.ERR_TOKEN_MISSING,
        protocol.ERR_UNAUTHORIZED,
        protocol.ERR_OTHER_ACCOUNT,
        protocol.ERR_FORBIDDEN,
        protocol.ERR_REQUEST_NOT_FOUND,
        protocol.ERR_VALIDATION,
        protocol.ERR_INTERNAL,
    }
)


class SubmitOutcomeUnknown(ApiError):
    """The submit may have reached RunComfy but no usable answer came back: the job may exist (and be billed)."""

    def __init__(self, message: str | None = None, *, cause: BaseException | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.cause = cause


class UnexpectedAnswerError(PermanentApiError):
    """RunComfy gave an unexpected answer about this request (no published error code).

    A bare 404, a 403 or another 4xx/3xx on status, result or cancel: it may mean the id is gone,
    or a proxy or an odd server spoke. ``status_code`` says which; the pool treats it as an outage.
    """


# --- values -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """RunComfy accepted a job. Only ``request_id`` is guaranteed; the URLs are kept for the record."""

    request_id: str
    status_url: str | None = None
    result_url: str | None = None
    cancel_url: str | None = None


@dataclass(frozen=True)
class StatusReport:
    request_id: str
    status: str  #: normalised: queued, running, completed, cancelled or failed
    raw_status: str | None  #: the word RunComfy sent
    queue_position: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class ResultReport:
    request_id: str
    status: str  #: normalised: queued, running, completed, cancelled or failed
    raw_status: str | None
    output_urls: tuple[str, ...] = ()  #: every URL in ``output``, in order, without duplicates
    error: str | None = None  #: one line, for a failed job
    created_at: datetime | None = None
    finished_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class CancelReport:
    request_id: str
    cancelled: bool  #: True when RunComfy cancelled it (nothing billed)
    outcome: str | None  #: ``cancelled`` / ``not_cancellable`` / whatever was sent
    status: str | None  #: normalised status, when the answer had one


# --- small helpers ------------------------------------------------------------------------------


#: a shorter token (a test token such as `t`) cannot be told from ordinary text: replacing it
#: would garble every message (`[redacted]he job failed`), so only `Bearer ...` is redacted then
MIN_REDACTED_SECRET = 8


def redact(text: str, secret: str | None) -> str:
    """``text`` without ``secret`` and without anything that looks like a bearer token."""
    if not isinstance(text, str):
        text = str(text)
    if secret and len(secret) >= MIN_REDACTED_SECRET:
        text = text.replace(secret, "[redacted]")
    return re.sub(r"(?i)(bearer\s+)[^\s\"',;]+", r"\1[redacted]", text)


def redact_value(value: Any, secret: str | None) -> Any:
    """``value`` (decoded JSON, or any nesting of dicts, lists and strings) with every string redacted."""
    if isinstance(value, str):
        return redact(value, secret)
    if isinstance(value, Mapping):
        return {redact(str(k), secret): redact_value(v, secret) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v, secret) for v in value)
    return value


def one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: JSON nested deeper than this is not an answer of RunComfy's (and would exhaust the stack)
MAX_JSON_DEPTH = 64


def decode_body(body: bytes | str | Mapping[str, Any] | list[Any] | None, charset: str | None = None) -> Any:
    """The JSON value of a body, or None when it is empty or not JSON.

    Bytes are UTF-8 (a byte-order mark is skipped) or, failing that, the ``charset`` the answer
    declared. A document nested deeper than ``MAX_JSON_DEPTH`` counts as not JSON.
    """
    if body is None or isinstance(body, (Mapping, list)):
        return body
    if isinstance(body, bytes):
        text = _text(body, charset)
        if text is None:
            return None
        body = text
    body = body.removeprefix("\ufeff")
    if not body.strip() or _nesting(body) > MAX_JSON_DEPTH:
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _text(body: bytes, charset: str | None) -> str | None:
    """``body`` as text: UTF-8 (a byte-order mark skipped), else the declared charset, else None."""
    for encoding in ("utf-8-sig", charset):
        if encoding:
            try:
                return body.decode(encoding)
            except (LookupError, UnicodeDecodeError):
                continue
    return None


def _nesting(text: str) -> int:
    """How deep brackets nest in ``text`` (strings included: an upper bound, cheap to compute)."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _text_excerpt(body: bytes | str | Any) -> str:
    """A short plain-text hint from a non-JSON body (an HTML error page's title, say)."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if not isinstance(body, str):
        return ""
    title = re.search(r"<title[^>]*>(.*?)</title>", body, re.I | re.S)
    text = title.group(1) if title else re.sub(r"<[^>]+>", " ", body)
    return one_line(text, 120)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _lower_headers(headers: Mapping[str, str] | Any | None) -> dict[str, str]:
    if not headers:
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` value (delta-seconds or HTTP-date); None when absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max((when - now).total_seconds(), 0.0)


def summarize_detail(detail: Any) -> str:
    """A 422 ``detail`` as one line: ``duration: must be <= 15; prompt: field required``."""
    if detail is None:
        return ""
    if isinstance(detail, str):
        return one_line(detail)
    if isinstance(detail, Mapping):
        if "msg" in detail or "message" in detail:
            detail = [detail]
        else:
            return one_line("; ".join(f"{k}: {summarize_detail(v)}" for k, v in detail.items()))
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = item.get("loc") or item.get("field") or item.get("path") or ()
                if isinstance(loc, str):
                    loc = [loc]
                names = [str(p) for p in loc if p not in ("body",)] if isinstance(loc, list | tuple) else []
                message = item.get("msg") or item.get("message") or item.get("error") or ""
                where = ".".join(names)
                parts.append(f"{where}: {message}" if where else str(message))
            else:
                parts.append(str(item))
        return one_line("; ".join(p for p in parts if p))
    return one_line(str(detail))


# --- errors -------------------------------------------------------------------------------------

_CODE_CLASSES: dict[int, type[BatchrunError]] = {
    protocol.ERR_UNKNOWN_MODEL: UnknownModelError,
    protocol.ERR_INSUFFICIENT_BALANCE: InsufficientBalanceError,
    protocol.ERR_TOKEN_MISSING: AuthError,
    protocol.ERR_UNAUTHORIZED: AuthError,
    protocol.ERR_OTHER_ACCOUNT: ForbiddenError,
    protocol.ERR_FORBIDDEN: ForbiddenError,
    protocol.ERR_REQUEST_NOT_FOUND: RequestNotFoundError,
    protocol.ERR_VALIDATION: ValidationRejectedError,
    protocol.ERR_INTERNAL: TransientApiError,
}


def _class_for_http(status: int) -> type[BatchrunError] | None:
    if status == 401:
        return AuthError
    if status == 402:  # not published; a payment problem stops submitting like 400002
        return InsufficientBalanceError
    if status == 403:
        return ForbiddenError
    if status == 404:
        return RequestNotFoundError
    if status == 422:
        return ValidationRejectedError
    if status == 429:
        return RateLimitedError
    if status == 408 or status >= 500:
        return TransientApiError
    if 300 <= status < 500:
        return PermanentApiError
    return None


def classify_error(
    status_code: int,
    headers: Mapping[str, str] | Any | None,
    body: bytes | str | Mapping[str, Any] | None,
    *,
    secret: str | None = None,
    now: datetime | None = None,
    poll: bool = False,
    submit: bool = False,
) -> BatchrunError | None:
    """The error an answer signals (``AuthError`` or an ``ApiError``), or None for a good answer.

    ``poll=True`` for calls about an existing request id (status, result, cancel): a refusal that
    carries no published code raises ``UnexpectedAnswerError`` instead of a specific class.
    ``submit=True`` for ``POST /v1/models/{id}``, where a 404 without a code means the model is
    unknown (no request id is involved yet).
    """
    data = decode_body(body)
    payload = data if isinstance(data, Mapping) else {}
    nested = payload.get("detail")
    if (_int_or_none(payload.get("error_code")) is None and isinstance(nested, Mapping)
            and _int_or_none(nested.get("error_code")) is not None):
        payload = nested  # a framework's wrapper, {"detail": {"error_code": ..., "error_message": ...}}
    code = _int_or_none(payload.get("error_code"))
    if code is not None and (code == 0 or 200 <= code < 300):  # "error_code": 0 / 200 mean no error
        code = None
    ok = 200 <= status_code < 300
    if ok and code is None:
        return None

    http_like = code is not None and 100 <= code <= 599  # an HTTP status sent as error_code
    cls: type[BatchrunError] | None = _CODE_CLASSES.get(code) if code is not None else None
    if status_code == 429 or (code == 429 and (ok or status_code == 400)):
        cls = RateLimitedError
    if cls is None and http_like and (ok or status_code == 400):
        assert code is not None
        cls = _class_for_http(code) or PermanentApiError
    if cls is None and not ok:
        cls = _class_for_http(status_code)
    if cls is None and code is not None:  # an unpublished code: go by its leading digits
        cls = _class_for_http(code // 1000) if 100 <= code // 1000 < 600 else None
    if cls is None:
        cls = PermanentApiError
    if submit and cls is RequestNotFoundError and code not in PUBLISHED_CODES:
        cls = UnknownModelError
    if poll and issubclass(cls, PermanentApiError) and code not in PUBLISHED_CODES:
        if cls is not InsufficientBalanceError:  # a 402 stops submitting, wherever it comes from
            cls = UnexpectedAnswerError

    server_message = payload.get("error_message") or payload.get("message") or payload.get("error")
    if isinstance(server_message, Mapping):
        server_message = server_message.get("message") or json.dumps(server_message)
    if server_message is not None and not isinstance(server_message, str):
        server_message = str(server_message)
    detail = payload.get("detail")
    if cls is ValidationRejectedError or (status_code == 422 and detail is not None) or (
        not server_message and detail is not None
    ):  # a bare {"detail": ...} is the only reason some servers (FastAPI's) give
        summary = summarize_detail(detail)
        if summary:
            server_message = f"{server_message}: {summary}" if server_message else summary
    if not server_message and data is None and body:
        excerpt = _text_excerpt(body)
        server_message = f"non-JSON answer: {excerpt}" if excerpt else "non-JSON answer"
    said = server_message or ""
    where_parts = [] if f"HTTP {status_code}" in said else [f"HTTP {status_code}"]
    if code is not None and code != status_code and str(code) not in said:
        where_parts.append(f"error_code {code}")
    where = f" ({', '.join(where_parts)})" if where_parts else ""
    base = (cls.__doc__ or cls.__name__).strip().splitlines()[0].rstrip(".")
    base = re.sub(r"\s*\(HTTP \d{3}\)$", "", base)  # the status is said once, in `where`
    text = f"{base}: {server_message}{where}" if server_message else f"{base}{where}"
    message = one_line(redact(text, secret), 500)  # redact first: a cut could keep half a token

    if cls is AuthError:
        return AuthError(message, status_code=status_code, error_code=code)
    assert issubclass(cls, ApiError)
    retry_after = None
    if issubclass(cls, TransientApiError):
        retry_after = parse_retry_after(_lower_headers(headers).get("retry-after"), now=now)
    if cls is RateLimitedError:
        return RateLimitedError(
            message, retry_after=retry_after, status_code=status_code, error_code=code, detail=detail
        )
    if retry_after is not None:  # a 503 (or any 5xx) that says when to come back
        return cls(message, status_code=status_code, error_code=code, detail=detail, retry_after=retry_after)
    return cls(message, status_code=status_code, error_code=code, detail=detail)


# --- answers ------------------------------------------------------------------------------------


def _status_key(word: str) -> str:
    return re.sub(r"[\s-]+", "_", word.strip().lower())


def known_status(word: Any) -> str | None:
    """The batchrun status for a RunComfy status word, or None when the word is not known."""
    if not isinstance(word, str):
        return None
    return _STATUS_OF.get(_status_key(word))


def normalize_status(word: Any) -> str:
    """The batchrun status for a RunComfy status word; unknown words count as still running."""
    return known_status(word) or RUNNING


def _infer_status(raw: Any, urls: tuple[str, ...], error: str | None) -> str:
    """A known word decides; otherwise files mean completed, an error failed, nothing running."""
    known = known_status(raw)
    if known is not None:
        return known
    if urls:
        return COMPLETED
    if error:
        return FAILED
    return RUNNING


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"(?i)^https?://[^\s/]+", value.strip()) is not None


_LINK_KEYS = ("url", "uri", "href")
_MAX_DEPTH = 6


#: a reference with a scheme (``ftp:``, ``data:``, ``s3:``): never a path under the API's host
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
#: a path written without its leading slash still names a file: a folder in it, or an extension
_FILE_LIKE = re.compile(r"[^/]/|\.[A-Za-z0-9]{1,5}(?:[?#]|$)")


def _url_from(value: str, base_url: str | None, relative: bool) -> str | None:
    """``value`` as an absolute http(s) URL, or None. Under a media or link key (``relative``) a path
    counts too, resolved against the API's host: ``/files/x.mp4``, ``//cdn.test/x.mp4``, and one
    written without its leading slash (``files/x.mp4``, ``x.mp4``), which is not a word like
    ``none`` or ``pending``."""
    text = value.strip()
    if _is_url(text):
        return text
    if not (relative and base_url) or not text or any(c.isspace() for c in text):
        return None
    if not text.startswith("/") and (_SCHEME.match(text) or not _FILE_LIKE.search(text)):
        return None
    joined = urljoin(base_url.rstrip("/") + "/", text if text.startswith("/") else "/" + text)
    return joined if _is_url(joined) else None


def _urls_in(value: Any, base_url: str | None, relative: bool, depth: int = 0) -> list[str]:
    """URLs in ``value``: strings, lists, and objects (link keys, then media keys, then the rest).

    ``relative``: a path such as ``/files/x.mp4`` counts (under a media or link key only).
    """
    if depth > _MAX_DEPTH:
        return []
    if isinstance(value, str):
        url = _url_from(value, base_url, relative)
        return [url] if url else []
    if isinstance(value, list | tuple):
        return [u for item in value for u in _urls_in(item, base_url, relative, depth + 1)]
    if isinstance(value, Mapping):
        found: list[str] = []
        for key in (*_LINK_KEYS, *protocol.OUTPUT_URL_KEYS):
            if key in value:
                found += _urls_in(value[key], base_url, True, depth + 1)
        for key, item in value.items():
            if key not in _LINK_KEYS and key not in protocol.OUTPUT_URL_KEYS:
                found += _urls_in(item, base_url, False, depth + 1)
        return found
    return []


def collect_output_urls(output: Any, base_url: str | None = None) -> tuple[str, ...]:
    """Every URL in an ``output`` value, without duplicates, the video first.

    The documented keys come first (``video``, ``videos``, ``image``, ``images``, each a URL, a
    list, or objects such as ``{"url": ...}``), then any URL anywhere else in the output. Paths
    such as ``/files/x.mp4`` under a documented or ``url`` key are resolved against ``base_url``.
    """
    found: list[str] = []
    if isinstance(output, Mapping):
        for key in protocol.OUTPUT_URL_KEYS:
            if key in output:
                found += _urls_in(output[key], base_url, True)
        for key, value in output.items():
            if key not in protocol.OUTPUT_URL_KEYS:
                found += _urls_in(value, base_url, key in _LINK_KEYS)
    else:
        found += _urls_in(output, base_url, True)
    return tuple(dict.fromkeys(found))


def _require_object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise TransientApiError(f"RunComfy's {what} answer was not a JSON object")
    return data


def _request_id(data: Mapping[str, Any], fallback: str) -> str:
    value = data.get("request_id")
    return str(value) if isinstance(value, str | int) and str(value) else fallback


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_timestamp(value: Any) -> datetime | None:
    """An ISO 8601 text or epoch seconds/milliseconds as an aware datetime; None when unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        if seconds > 1e11:  # milliseconds
            seconds /= 1000
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return parse_timestamp(float(text))
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            return None
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return None


def _error_text(value: Any) -> str | None:
    if value is None or value is False or value == 0 or value == "" or value == {} or value == []:
        return None
    if value is True:
        return "RunComfy reported an error (no reason given)"
    if isinstance(value, Mapping):
        text = value.get("message") or value.get("error_message") or value.get("detail")
        value = text if text else json.dumps(value, sort_keys=True)
    text = one_line(str(value))
    return text or None


def _answer_error(obj: Mapping[str, Any]) -> str | None:
    """The failure text of a status/result answer: ``error``, else ``error_message``."""
    return _error_text(obj.get("error")) or _error_text(obj.get("error_message"))


def submitted_request_id(data: Any) -> str | None:
    """The ``request_id`` a submit answer names (a non-blank string or number), if any."""
    request_id = data.get("request_id") if isinstance(data, Mapping) else None
    if not isinstance(request_id, str | int) or isinstance(request_id, bool) or not str(request_id).strip():
        return None
    return str(request_id)  # exactly as given: it names the job in every later request


def parse_submission(data: Any) -> Submission:
    """A submit answer; without a ``request_id`` the job may still exist: SubmitOutcomeUnknown."""
    if not isinstance(data, Mapping):
        raise SubmitOutcomeUnknown("RunComfy's submit answer was not a JSON object; the job may exist")
    request_id = submitted_request_id(data)
    if request_id is None:
        raise SubmitOutcomeUnknown("RunComfy's submit answer had no request_id; the job may exist")
    return Submission(
        request_id=request_id,
        status_url=_optional_str(data.get("status_url")),
        result_url=_optional_str(data.get("result_url")),
        cancel_url=_optional_str(data.get("cancel_url")),
    )


def parse_status(data: Any, request_id: str, *, base_url: str | None = None) -> StatusReport:
    """A status answer (an unknown word with output or an error present is read like a result)."""
    obj = _require_object(data, "status")
    raw = obj.get("status")
    position = _int_or_none(obj.get("queue_position"))
    status = _infer_status(raw, collect_output_urls(obj.get("output"), base_url), _answer_error(obj))
    return StatusReport(
        request_id=_request_id(obj, request_id),
        status=status,
        raw_status=raw if isinstance(raw, str) else None,
        queue_position=position if position is not None and position >= 0 else None,
    )


def parse_result(data: Any, request_id: str, *, base_url: str | None = None) -> ResultReport:
    """A result answer (also a poll: unfinished jobs answer with their status and no output)."""
    obj = _require_object(data, "result")
    raw = obj.get("status")
    urls = collect_output_urls(obj.get("output"), base_url)
    error = _answer_error(obj)
    return ResultReport(
        request_id=_request_id(obj, request_id),
        status=_infer_status(raw, urls, error),
        raw_status=raw if isinstance(raw, str) else None,
        output_urls=urls,
        error=error,
        created_at=parse_timestamp(obj.get("created_at")),
        finished_at=parse_timestamp(obj.get("finished_at")),
        raw=dict(obj),
    )


def parse_cancel(data: Any, request_id: str) -> CancelReport:
    """A cancel answer: ``cancelled`` when RunComfy says so (outcome, or status when no outcome)."""
    obj = _require_object(data, "cancel")
    outcome = obj.get("outcome")
    outcome = outcome.strip().lower() if isinstance(outcome, str) else None
    raw = obj.get("status")
    status = normalize_status(raw) if isinstance(raw, str) and raw.strip() else None
    if outcome is not None:
        cancelled = known_status(outcome) == CANCELLED
    else:
        cancelled = status == CANCELLED
    return CancelReport(
        request_id=_request_id(obj, request_id), cancelled=cancelled, outcome=outcome, status=status
    )
