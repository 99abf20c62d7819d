"""What the simulated RunComfy answers: routing, authentication, faults and the JSON bodies.

Transport-free: ``App.handle`` takes a parsed request and returns an ``Answer`` that the HTTP
layer (``http.py``) writes, truncates or aborts. Paths, status words and error codes come from
``batchrun.protocol``; nothing here is shared with the client's logic.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from batchrun import protocol

from . import faults as faultdraw
from .checker import check_input, input_schema
from .config import Faults, SimConfig
from .engine import Engine, InsufficientBalance, Job, TooManyInFlight
from .files import CONTENT_TYPE, FILE_NAME, IMAGE_NAME, ResultFile, path_for

Headers = list[tuple[bytes, bytes]]

_MODELS_PREFIX = protocol.submit_path("")  # "/v1/models/"


def _request_pattern(build: Any) -> re.Pattern[str]:
    before, after = build("\0").split("\0")
    return re.compile(f"^{re.escape(before)}(?P<id>[^/]+){re.escape(after)}$")


_REQUEST_PATTERNS = {
    "status": _request_pattern(protocol.status_path),
    "result": _request_pattern(protocol.result_path),
    "cancel": _request_pattern(protocol.cancel_path),
}
_FILE_RE = re.compile(r"^/files/(?P<id>[^/]+)/(?P<name>" + re.escape(FILE_NAME) + r"|" + re.escape(IMAGE_NAME) + r")$")
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")

_ALT_SPELLING = {protocol.COMPLETED: protocol.SUCCEEDED, protocol.CANCELLED: protocol.CANCELED}


@dataclass
class Answer:
    """One response, plus how the transport should (mis)deliver it."""

    status: int
    headers: Headers
    body: list[bytes | memoryview] = field(default_factory=list)
    length: int = 0  # Content-Length announced
    abort: bool = False  # reset the connection instead of answering
    truncate_to: int | None = None  # send only this many body bytes, then close


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def json_answer(status: int, obj: Any, extra: Headers | None = None) -> Answer:
    body = json.dumps(obj, separators=(",", ":")).encode()
    headers: Headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if extra:
        headers.extend(extra)
    return Answer(status, headers, [body], len(body))


def _html_answer(status: int, reason: str) -> Answer:
    body = f"<html><head><title>{status} {reason}</title></head><body><center><h1>{status} {reason}</h1></center></body></html>\n".encode()
    headers: Headers = [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())]
    return Answer(status, headers, [body], len(body))


ABORT = Answer(0, [], abort=True)


class App:
    """The simulated service's request handling; ``port`` is set once the server is bound."""

    def __init__(self, config: SimConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.faults: Faults = config.faults
        self.blank_files = config.blank_files
        self.token = config.token
        self.api_host = "127.0.0.1"
        self.port = 0
        self._files: dict[str, ResultFile] = {}
        self._results_given: dict[str, int] = {}  # completed /result answers per job (expire_first_urls)

    # -- helpers -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.api_host}:{self.port}"

    def file_url(self, request_id: str) -> str:
        return f"http://{self.config.file_host}:{self.port}{path_for(request_id)}"

    def error(self, status: int, code: int | None, message: str, **extra: Any) -> Answer:
        body: dict[str, Any] = {} if code is None else {"error_code": code}
        body[self.config.error_message_key] = message
        body.update(extra)
        return json_answer(status, body)

    def _spell(self, status: str) -> str:
        return _ALT_SPELLING.get(status, status) if self.config.status_variant == "alt" else status

    @property
    def _alt(self) -> bool:
        return self.config.status_variant == "alt"

    # -- entry point -------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        path = unquote(target.split("?", 1)[0])
        kind, route = self._route(method, path)
        self.engine.count_request(kind)
        if kind == "other":
            return route or self.error(404, None, f"not found: {path}")
        faults = self.faults
        if faults.any():
            fault = faultdraw.draw_early(faults, kind, self.engine.rng)
            if fault is not None:
                self.engine.count_fault(fault)
                return self._early_fault(fault, faults)
        if kind == "file":
            if self.config.expire_first_urls and target.endswith("?sig=1"):
                return self.error(403, None, "Request has expired")
            if "authorization" in headers:
                with self.engine.lock:
                    self.engine.authorization_headers_on_files += 1
            if self.blank_files == "html":
                return _html_answer(200, "OK")
            if self.blank_files == "empty":
                return Answer(200, [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", b"0")], [b""], 0)
            if self.blank_files == "missing":
                return _html_answer(404, "Not Found")
            return self._file(method, route, headers)
        auth = self._authenticate(headers)
        if auth is not None:
            return auth
        if kind == "submit":
            return self._submit(route, body)
        if kind == "model_info":
            return self._model_info(route)
        found = self.engine.get(route)
        if found is None:
            return self.error(404, protocol.ERR_REQUEST_NOT_FOUND, f"request {route} not found")
        if kind == "cancel":
            return self._cancel(route)
        job, position = found
        return self._status(job, position) if kind == "status" else self._result(job)

    def _route(self, method: str, path: str) -> tuple[str, Any]:
        if path.startswith(_MODELS_PREFIX):
            model_id = path[len(_MODELS_PREFIX) :]
            if method == "POST":
                return "submit", model_id
            if method == "GET":
                return "model_info", model_id
            return "other", self._not_allowed(method)
        for action, pattern in _REQUEST_PATTERNS.items():
            match = pattern.match(path)
            if match:
                if method != ("POST" if action == "cancel" else "GET"):
                    return "other", self._not_allowed(method)
                return action, match["id"]
        match = _FILE_RE.match(path)
        if match:
            if method not in ("GET", "HEAD"):
                return "other", self._not_allowed(method)
            return "file", (match["id"], match["name"])
        return "other", None

    def _not_allowed(self, method: str) -> Answer:
        return self.error(405, None, f"method {method} not allowed here")

    def _early_fault(self, fault: str, faults: Faults) -> Answer:
        rng = self.engine.rng
        if fault == "reset":
            return ABORT
        if fault == "server_error":
            choice = faultdraw.server_error_answer(rng)
            if choice.json:
                return self.error(choice.status, protocol.ERR_INTERNAL, "internal server error (simulated)")
            return _html_answer(choice.status, "Bad Gateway" if choice.status == 502 else "Service Temporarily Unavailable")
        if fault == "rate_limit":
            answer = self.error(429, None, "too many requests (simulated)")
            retry_after = faultdraw.retry_after_header(faults, rng)
            if retry_after is not None:
                answer.headers.append((b"retry-after", retry_after.encode()))
            return answer
        # error_200: a transient internal error disguised as success
        return self.error(200, protocol.ERR_INTERNAL, "internal error, please retry (simulated)")

    def _authenticate(self, headers: dict[str, str]) -> Answer | None:
        value = headers.get("authorization")
        if value is None:
            return self.error(400, protocol.ERR_TOKEN_MISSING, "missing API token")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or token.strip() != self.token:
            return self.error(401, protocol.ERR_UNAUTHORIZED, "invalid, expired or revoked API token")
        return None

    # -- endpoints ---------------------------------------------------------------------------
    def _submit(self, model_id: str, raw: bytes) -> Answer:
        schema = input_schema(model_id)
        if schema is None:
            return self.error(400, protocol.ERR_UNKNOWN_MODEL, f"unknown model id: {model_id}")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            detail = [{"loc": ["body"], "msg": f"JSON decode error: {exc}", "type": "json_invalid"}]
            return self.error(422, protocol.ERR_VALIDATION, "validation error", detail=detail)
        problems = check_input(schema, body)
        banned = self.engine.config.reject_prompts_containing
        if not problems and banned and banned in str(body.get("prompt", "")):
            problems = [{"loc": ["body", "prompt"], "msg": "prompt rejected by the content filter",
                         "type": "value_error.content_policy"}]
        if problems:
            return self.error(422, protocol.ERR_VALIDATION, "validation error", detail=problems)
        digest = hashlib.sha256(canonical_json({"model": model_id, "input": body}).encode()).hexdigest()
        try:
            job = self.engine.submit(model_id, digest)
        except InsufficientBalance:
            return self.error(400, protocol.ERR_INSUFFICIENT_BALANCE, "insufficient balance")
        except TooManyInFlight:
            return self.error(429, None, "too many requests in flight")
        if faultdraw.draw_late(self.faults, "lost_submit", self.engine.rng):
            self.engine.count_fault("lost_submit")
            return ABORT
        answer: dict[str, Any] = {"request_id": job.request_id}
        if not self._alt:
            rid = job.request_id
            answer["status_url"] = self.base_url + protocol.status_path(rid)
            answer["result_url"] = self.base_url + protocol.result_path(rid)
            answer["cancel_url"] = self.base_url + protocol.cancel_path(rid)
        return json_answer(self.config.submit_http_status, answer)

    def _model_info(self, model_id: str) -> Answer:
        schema = input_schema(model_id)
        if schema is None:
            return self.error(400, protocol.ERR_UNKNOWN_MODEL, f"unknown model id: {model_id}")
        return json_answer(200, {"model_id": model_id, "input_schema": schema})

    def _status(self, job: Job, position: int | None) -> Answer:
        answer: dict[str, Any] = {"request_id": job.request_id, "status": self._spell(job.status)}
        if not self._alt:
            answer["status_url"] = self.base_url + protocol.status_path(job.request_id)
            answer["result_url"] = self.base_url + protocol.result_path(job.request_id)
            if position is not None:
                answer["queue_position"] = position
        return json_answer(200, answer)

    def _result(self, job: Job) -> Answer:
        answer: dict[str, Any] = {"request_id": job.request_id, "status": self._spell(job.status)}
        if job.status == protocol.COMPLETED:
            url = self.file_url(job.request_id)
            if self.config.expire_first_urls:
                with self.engine.lock:
                    seen = self._results_given[job.request_id] = self._results_given.get(job.request_id, 0) + 1
                url += f"?sig={seen}"  # only the first signature is expired
            if self.config.image_only_output:
                answer["output"] = {"image": url.replace(FILE_NAME, IMAGE_NAME)}
            else:
                answer["output"] = {"videos": [url]} if self._alt else {"video": url}
            if self.config.thumbnail_output:
                answer["output"]["images"] = [url.replace(FILE_NAME, IMAGE_NAME)]
            if self.config.extra_output_url:
                answer["output"]["images"] = [self.config.extra_output_url]
            if self.config.repeated_video_url:  # the same file again, under another signature
                answer["output"]["videos"] = [url + ("&" if "?" in url else "?") + "copy=2"]
        if job.status == protocol.FAILED:
            answer["error"] = job.error
            if self.config.failure_error_code is not None:
                answer["error_code"] = self.config.failure_error_code
        if not self._alt:
            answer["created_at"] = _iso(self.engine.wall(job.created_at))
            if job.finished_at is not None:
                answer["finished_at"] = _iso(self.engine.wall(job.finished_at))
        return json_answer(200, answer)

    def _cancel(self, request_id: str) -> Answer:
        found = self.engine.cancel(request_id)
        if found is None:
            return self.error(404, protocol.ERR_REQUEST_NOT_FOUND, f"request {request_id} not found")
        job, cancelled = found
        if self.config.empty_cancel_answers:
            return Answer(204, [(b"content-length", b"0")])
        outcome = protocol.OUTCOME_CANCELLED if cancelled else protocol.OUTCOME_NOT_CANCELLABLE
        return json_answer(200, {"request_id": job.request_id, "status": self._spell(job.status), "outcome": outcome})

    def _file(self, method: str, route: tuple[str, str], headers: dict[str, str]) -> Answer:
        request_id, name = route
        found = self.engine.get(request_id)
        if found is None or found[0].status != protocol.COMPLETED:
            return self.error(404, protocol.ERR_REQUEST_NOT_FOUND, "no such file")
        # the image (a thumbnail) is a file of its own: other bytes than the video's
        key = request_id if name == FILE_NAME else f"{request_id}/{name}"
        result = self._files.get(key)
        if result is None:
            result = self._files[key] = ResultFile(key)
        with self.engine.lock:
            self.engine.file_digests[self.file_url(request_id).replace(FILE_NAME, name)] = result.sha256
        size = result.size
        start, end, status = 0, size, 200
        headers_out: Headers = [
            (b"content-type", CONTENT_TYPE.encode()),
            (b"accept-ranges", b"bytes"),
            (b"etag", result.etag.encode()),
        ]
        spec = headers.get("range")
        if spec is not None:
            with self.engine.lock:
                self.engine.range_requests += 1
            if_range = headers.get("if-range")
            if if_range is None or if_range == result.etag:
                parsed = _parse_range(spec, size)
                if parsed == "unsatisfiable":
                    answer = self.error(416, None, f"range not satisfiable: {spec}")
                    answer.headers.append((b"content-range", f"bytes */{size}".encode()))
                    return answer
                if parsed is not None:
                    start, end = parsed
                    status = 206
                    headers_out.append((b"content-range", f"bytes {start}-{end - 1}/{size}".encode()))
        length = end - start
        headers_out.append((b"content-length", str(length).encode()))
        if method == "HEAD":
            return Answer(status, headers_out, [], length)
        answer = Answer(status, headers_out, result.chunks(start, end), length)
        if length > 1 and faultdraw.draw_late(self.faults, "truncated_download", self.engine.rng):
            self.engine.count_fault("truncated_download")
            answer.truncate_to = faultdraw.truncate_at(length, self.engine.rng)
        return answer

    def served_files(self) -> dict[str, str]:
        with self.engine.lock:
            return dict(self.engine.file_digests)


def _parse_range(spec: str, size: int) -> tuple[int, int] | str | None:
    """``[start, end)`` for one ``bytes=`` range; None to ignore it; "unsatisfiable" for 416."""
    match = _RANGE_RE.match(spec.strip())
    if not match or (not match[1] and not match[2]):
        return None  # multiple or malformed ranges: answer the whole file, as RFC 9110 allows
    if not match[1]:  # suffix: the last N bytes
        n = int(match[2])
        if n == 0:
            return "unsatisfiable"
        return max(size - n, 0), size
    start = int(match[1])
    end = min(int(match[2]) + 1, size) if match[2] else size
    if start >= size or end <= start:
        return "unsatisfiable"
    return start, end
