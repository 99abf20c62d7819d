"""The RunComfy Model API over httpx: submit, status, result, cancel.

What is retried (per the ``RetryPolicy``, default ``RetryPolicy()``):

- ``status``, ``result``, ``cancel`` are idempotent: retried on every transient failure (transport
  errors, timeouts, HTTP 408/429/5xx, ``error_code`` 500001, answers that are not JSON objects).
- ``submit`` creates a billed job and RunComfy has no idempotency key, so it makes exactly ONE
  POST and never waits: the caller, which knows the job's recorded state, does the retrying.
  It raises ``TransientApiError`` (``retry_after`` kept) only when the job certainly was not
  created, so that the caller can record the job as not submitted before it waits:

  * the connection could not be made or no pooled connection was free (``ConnectError``,
    ``ConnectTimeout``, ``PoolTimeout``): the request never left;
  * HTTP 429 and HTTP 5xx / ``error_code`` 500001 answers, except 504. ASSUMPTION (not
    published): an error answer means RunComfy did not create the job. It is the only reading
    under which a 5xx can be retried at all; every other reading makes each 5xx a manual
    decision. A 504 (Gateway Timeout) is the exception, and so are the 520 and 524 of a
    Cloudflare-style proxy: RunComfy had the request and may well have created the job, so it is
    an answer that was lost.

  When the request may have been sent but no usable answer came back (read/write timeout,
  connection reset or closed mid-exchange, ``RemoteProtocolError``, a 2xx without
  ``request_id`` or not JSON), ``submit`` raises ``SubmitOutcomeUnknown`` (an ``ApiError``, NOT
  transient, ``cause`` = the underlying error). The caller must treat the job as possibly
  created and apply its "submitting" policy; it must not simply submit again.

Errors raised: ``AuthError`` (stop the run), ``InsufficientBalanceError`` (stop submitting; on
status/result/cancel too: keep polling), ``RequestNotFoundError`` / ``ForbiddenError`` on a
poll only for the published codes 404001 / 403001 / 403003 (the id is gone for sure),
``UnexpectedAnswerError`` on a poll for a refusal without a published code (a bare 404, an odd
4xx: worth a few more polls), other ``PermanentApiError`` subclasses (fail the job),
``TransientApiError`` (retries exhausted; the job stays as it was), ``SubmitOutcomeUnknown``.
Transport errors are wrapped in ``TransientApiError`` (``__cause__`` kept).

The token never leaves the client in anything the server said: every answer body is redacted
(the token, and ``Bearer <anything>``) before it is classified or parsed, and every error
message is redacted again on the way out (a token shorter than 8 characters is not searched
for: `t` would rewrite `request_id` itself). Relative output URLs are resolved against
``base_url``.

CPU per request (httpx costs 1.7-2 ms of it on a slow 2-core machine): at most
``max_connections`` status/result/cancel requests are in flight, the rest wait in the client's
own queue, because httpcore's pool scans every connection (and every request queued inside it)
whenever a request starts or ends: with 50 polls at once that doubled the CPU of each.
``api_lanes(concurrency)`` sizes that for a run. Submits never wait behind polls: they have
``SUBMIT_CONNECTIONS`` more connections of their own in the pool, where a submit that finds no
free one fails with ``PoolTimeout``, i.e. certainly not sent (the job was already marked
``submitting``: a wait there, cut by a double Ctrl-C, would leave it in doubt). URLs are parsed once per request id, and the client keeps no cookies
(none are needed; parsing each answer's cookies was 7% of a request).
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Awaitable, Callable, Mapping
from http.cookiejar import CookieJar
from typing import Any
from urllib.parse import quote

import anyio
import httpx

from batchrun import __version__, protocol
from batchrun.api.responses import (
    CANCELLED,
    FAILED,
    TERMINAL,
    CancelReport,
    ResultReport,
    StatusReport,
    Submission,
    SubmitOutcomeUnknown,
    classify_error,
    decode_body,
    known_status,
    parse_cancel,
    parse_result,
    parse_status,
    parse_submission,
    redact,
    redact_value,
    submitted_request_id,
)
from batchrun.errors import (
    AuthError,
    BatchrunError,
    ConfigError,
    PermanentApiError,
    RateLimitedError,
    RequestNotFoundError,
    TransientApiError,
    UnknownModelError,
)
from batchrun.retry import NO_RETRY, RetryPolicy
from batchrun.urls import is_loopback_host

USER_AGENT = f"batchrun/{__version__}"

#: failures after which a request certainly never reached the server
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

ENDPOINTS = ("submit", "status", "result", "cancel")

#: gateway answers sent after the origin had the request: 504 Gateway Timeout, and the
#: Cloudflare-style 520 (the origin's answer was unusable) and 524 (the origin took too long)
_ORIGIN_MAY_HAVE_IT = frozenset({504, 520, 524})

#: connections the pool keeps for submits beyond ``max_connections`` (the runner submits at most
#: ``--submit-parallelism``, default 4, at once)
SUBMIT_CONNECTIONS = 8

#: seconds a submit may wait for its answer: a POST still unanswered is a job in doubt (held in
#: `submitting` under the default policy), so a slow but working RunComfy is waited for longer
#: than a poll, whose timeout only costs one more poll
SUBMIT_READ_TIMEOUT = 120.0

#: the largest API answer read: a status or a result is a few KB, and an endless or enormous body
#: (a misbehaving proxy) must not take the machine's memory; past it the answer counts as lost
MAX_ANSWER_BYTES = 16 << 20
_STREAM_HEADERS = frozenset({b"content-encoding", b"transfer-encoding", b"content-length"})


async def _read_capped(response: httpx.Response) -> bytes:
    """The decoded body, or ``httpx.DecodingError`` (a transport failure to the callers: a poll is
    retried, a submit is in doubt) once it passes ``MAX_ANSWER_BYTES``."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
        raise httpx.DecodingError(f"answer of {int(declared):,} bytes, over the {MAX_ANSWER_BYTES:,}-byte limit",
                                  request=response.request)
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise httpx.DecodingError(f"answer over the {MAX_ANSWER_BYTES:,}-byte limit", request=response.request)
    return bytes(body)


#: URLs parsed and kept per client (one per request id and endpoint); forgotten all at once past it
_URL_CACHE = 4096


def api_lanes(concurrency: int) -> int:
    """Requests a run keeps in flight to the API: enough for its jobs' checks and submits at
    real-world round trips (8 lanes at 300 ms are 26 requests/s; 50 jobs checked every 10 s
    need 5), growing slowly with the in-flight cap (32 at 224 jobs), because httpcore's scan
    of its idle connections costs every request about 50 us per connection here."""
    return min(concurrency + 4, max(8, min(4 + concurrency // 8, 32)))


class NoCookieJar(CookieJar):
    """A cookie jar that keeps nothing and parses nothing: no server can make later requests carry
    state (passed to httpx as a bare ``CookieJar``, which it wraps as is)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Any) -> None:
        return None


def checked_base_url(base_url: str) -> str:
    """The API base URL without a trailing slash, or a ConfigError when it cannot be one."""
    try:
        url = httpx.URL(base_url)
        host = url.host  # decodes an IDNA name: `xn--` with nothing after raises here
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ConfigError(f"base URL must be an http(s) URL, got {base_url!r}") from None
    if url.scheme not in ("http", "https") or not host:
        raise ConfigError(f"base URL must be an http(s) URL, got {base_url!r}")
    if url.port is not None and not 0 < url.port < 65536:
        raise ConfigError(f"base URL has an impossible port ({url.port}): {base_url!r}")
    if url.query or url.fragment:
        raise ConfigError(f"base URL must not carry a query or a fragment: {base_url!r}")
    if url.path.rstrip("/").endswith("/v1"):  # every path batchrun sends starts with /v1/ already
        root = str(url.copy_with(path=url.path.rstrip("/")[: -len("/v1")] or "/")).rstrip("/")
        raise ConfigError(f"base URL must not end in /v1 (batchrun adds it): use {root}")
    return str(url).rstrip("/")


def plain_http_warning(base_url: str) -> str | None:
    """A warning when the token would travel unencrypted to another machine (a test server
    reached over plain http, say); None for https and for this machine (the simulator)."""
    url = httpx.URL(base_url)
    if url.scheme == "http" and not is_loopback_host(url.host):
        return (f"warning: the API token goes to {url.host} over plain http, unencrypted; "
                "use https unless this is a test server on a network you trust")
    return None


def checked_token(token: str) -> str:
    """The token as sent in the Authorization header, or a ConfigError naming what is wrong with
    it (never the token itself): a copy-paste can bring a space, a line break or an invisible
    character that no HTTP header may carry."""
    token = token.strip()
    if not token:
        raise ConfigError(f"no RunComfy API token; set {protocol.TOKEN_ENV}")
    for position, char in enumerate(token, start=1):
        if not ("!" <= char <= "~"):
            what = "a space" if char == " " else f"the character U+{ord(char):04X}"
            raise ConfigError(f"{protocol.TOKEN_ENV} holds {what} at position {position}, which no HTTP "
                              "header can carry; copy the token again")
    return token


class RunComfyClient:
    """One connection pool to the RunComfy Model API; use as ``async with RunComfyClient(...)``."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        max_connections: int = 20,
        timeout: httpx.Timeout | float = 30,
        submit_read_timeout: float = SUBMIT_READ_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[Any]] = anyio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._token = checked_token(token or "")
        self.base_url = checked_base_url(base_url)
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        self._rng = rng
        self.request_counts: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        self._lanes = anyio.CapacityLimiter(max_connections)  # polls; the pool has room for submits too
        self._urls: dict[str, httpx.URL] = {}
        timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._submit_timeout = httpx.Timeout(connect=timeout.connect, read=submit_read_timeout,
                                             write=timeout.write, pool=timeout.pool)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={
                "Authorization": f"Bearer {self._token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections + SUBMIT_CONNECTIONS,
                max_keepalive_connections=max_connections + SUBMIT_CONNECTIONS,
            ),
            follow_redirects=False,
            transport=transport,
            trust_env=False,  # never hand the token to a proxy picked up from the environment
            cookies=NoCookieJar(),
        )

    def __repr__(self) -> str:  # never show the token
        return f"RunComfyClient({self.base_url!r})"

    async def __aenter__(self) -> RunComfyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def check_host_resolves(self) -> None:
        """Raise ConfigError when the API host name does not exist (a typo in --base-url): that
        never heals, unlike a refused connection or a temporary DNS failure, which are retried."""
        host = httpx.URL(self.base_url).host
        try:
            socket.getaddrinfo(host, None)
        except socket.gaierror as error:
            if error.errno == socket.EAI_NONAME:
                raise ConfigError(f"cannot reach the RunComfy API: no such host {host!r} (check --base-url)") from None

    # --- the four calls -------------------------------------------------------------------------

    async def submit(self, model_id: str, input: Mapping[str, Any]) -> Submission:
        """Create a job with one POST, never retried here: a ``TransientApiError`` means it certainly
        was not created, and the caller decides when to try again (see the module docstring)."""
        if not model_id or not isinstance(model_id, str):
            raise UnknownModelError("empty model id")
        path = protocol.submit_path(quote(model_id.strip("/"), safe="/"))

        async def attempt() -> Submission:
            try:
                response = await self._send("submit", "POST", path, json=dict(input))
            except _NOT_SENT as error:
                raise self._transient(error, "submit") from error
            except httpx.RequestError as error:  # a broken connection, or an answer that cannot be decoded
                raise SubmitOutcomeUnknown(
                    self._safe(
                        f"no answer to the submit ({type(error).__name__}: {error}); the job may exist"
                    ),
                    cause=error,
                ) from error
            data, body = self._read(response)
            problem = classify_error(response.status_code, response.headers, body, secret=self._token, submit=True)
            if response.status_code in _ORIGIN_MAY_HAVE_IT:  # a proxy stopped waiting: RunComfy may have created it
                raise SubmitOutcomeUnknown(
                    self._safe(f"the submit timed out in a gateway (HTTP {response.status_code}); the job may exist"),
                    status_code=response.status_code,
                )
            if problem is not None and not _names_a_created_job(response, data, problem):
                raise problem
            try:
                return parse_submission(data)
            except SubmitOutcomeUnknown as error:
                raise SubmitOutcomeUnknown(
                    f"{error.message} (HTTP {response.status_code})", status_code=response.status_code
                ) from None

        return await self._run(attempt, NO_RETRY)

    async def status(self, request_id: str) -> StatusReport:
        """A job's status (and queue position while queued)."""
        data = await self._call("status", "GET", protocol.status_path(_quote_id(request_id)), about=request_id)
        return parse_status(data, request_id, base_url=self.base_url)

    async def result(self, request_id: str) -> ResultReport:
        """A job's status and, once completed, its output URLs; the cheap way to poll."""
        data = await self._call("result", "GET", protocol.result_path(_quote_id(request_id)), about=request_id)
        return parse_result(data, request_id, base_url=self.base_url)

    async def cancel(self, request_id: str) -> CancelReport:
        """Ask RunComfy to cancel a job (only queued jobs can be); safe to repeat.

        An empty 2xx answer (undocumented) is taken as "asked, outcome not said": the report
        then has neither outcome nor status, and the caller asks ``status`` for the truth.
        """
        data = await self._call("cancel", "POST", protocol.cancel_path(_quote_id(request_id)), empty_ok=True)
        return parse_cancel(data, request_id)

    # --- plumbing -------------------------------------------------------------------------------

    async def _run(self, attempt: Callable[[], Awaitable[Any]], retry: RetryPolicy | None = None) -> Any:
        try:
            async for trying in (retry or self.retry).retrying(sleep=self._sleep, rng=self._rng):
                with trying:
                    return await attempt()
        except BatchrunError as error:
            self._scrub_error(error)
            raise
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _read(self, response: httpx.Response) -> tuple[Any, Any]:
        """The decoded JSON (redacted), and the body to classify (that JSON, or redacted text).

        Everything is redacted, ids and URLs too: the token must reach no database or export,
        even echoed by a server. A real token (8 characters or more, see ``redact``) is never in
        an id by chance; a test token such as `t`, which would be, is not searched for."""
        data = redact_value(decode_body(response.content, response.charset_encoding), self._token)
        if isinstance(data, Mapping | list):
            return data, data
        text = response.content.decode("utf-8", "replace")
        return data, redact(text, self._token) if text else text

    def _scrub_error(self, error: BatchrunError) -> None:
        """The last line of defence: nothing an error carries out of the client holds the token."""
        error.message = redact(error.message, self._token)
        error.args = tuple(redact(a, self._token) if isinstance(a, str) else a for a in error.args)
        for name, value in list(vars(error).items()):
            if name in ("message", "args", "cause", "__cause__", "__context__", "__traceback__"):
                continue
            if isinstance(value, str | Mapping | list | tuple):
                setattr(error, name, redact_value(value, self._token))

    async def _call(self, endpoint: str, method: str, path: str, *, empty_ok: bool = False,
                    about: str | None = None) -> Any:
        """An idempotent request: retried on every transient failure; returns the decoded JSON
        (with ``empty_ok``, an empty object for a 2xx with an empty body). ``about``: the request
        id a status or result check asks about."""

        async def attempt() -> Any:
            try:
                response = await self._send(endpoint, method, path)
            except httpx.RequestError as error:  # a transport failure, or a body that cannot be decoded
                if isinstance(error, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
                    raise PermanentApiError(self._safe(f"{endpoint} request invalid: {error}")) from error
                raise self._transient(error, endpoint) from error
            data, body = self._read(response)
            problem = classify_error(
                response.status_code, response.headers, body, secret=self._token, poll=True
            )
            if problem is not None and not _tells_a_finished_job(endpoint, response, data, problem, about):
                raise problem
            if empty_ok and response.is_success and not response.content.strip():
                return {}
            if not isinstance(data, Mapping):
                raise TransientApiError(
                    f"RunComfy's {endpoint} answer was not a JSON object (HTTP {response.status_code})",
                    status_code=response.status_code,
                )
            return data

        return await self._run(attempt)

    async def _send(self, endpoint: str, method: str, path: str, json: Any = None) -> httpx.Response:
        self.request_counts[endpoint] = self.request_counts.get(endpoint, 0) + 1
        kwargs: dict[str, Any] = {} if json is None else {"json": json}
        if endpoint == "submit":
            kwargs["timeout"] = self._submit_timeout
        # a submit goes straight to the pool, never behind polls: see the module docstring
        async with contextlib.nullcontext() if endpoint == "submit" else self._lanes:
            request = self._http.build_request(method, self._url(path), **kwargs)
            # a GET that RunComfy (or its proxy) redirects (`/result` -> `/result/`) is followed;
            # httpx keeps the token only on the same origin. A POST or a cancel never is.
            response = await self._http.send(request, stream=True, follow_redirects=method == "GET")
            try:
                body = await _read_capped(response)
            finally:
                await response.aclose()
        # the body as read (decoded once): drop what described the encoded stream
        headers = [(k, v) for k, v in response.headers.raw if k.lower() not in _STREAM_HEADERS]
        return httpx.Response(response.status_code, headers=headers, content=body, request=request,
                              extensions=response.extensions)

    def _url(self, path: str) -> httpx.URL:
        """The absolute URL of ``path``, parsed once: a job is polled at the same URL many times."""
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= _URL_CACHE:
                self._urls.clear()
            url = self._urls[path] = httpx.URL(self.base_url + path)
        return url

    def _transient(self, error: BaseException, endpoint: str) -> TransientApiError:
        return TransientApiError(
            self._safe(f"could not reach RunComfy for {endpoint} ({type(error).__name__}: {error})"),
            cause=error,
        )

    def _safe(self, text: str) -> str:
        return redact(" ".join(text.split()), self._token)


def _names_a_created_job(response: httpx.Response, data: Any, problem: BaseException) -> bool:
    """Whether a submit answer marked as a temporary failure still says the job was created: a
    2xx naming a ``request_id`` (``{"request_id": "...", "error_code": 500001}``). Taken as
    created, the job is polled, and the poll tells its fate; taken as refused, it would be posted
    and paid again. A refusal of the job itself (422001, 400001, 403001) or of the run (a token,
    the balance) keeps its meaning: nothing is generated for it."""
    return response.is_success and isinstance(problem, TransientApiError) and submitted_request_id(data) is not None


def _tells_a_finished_job(endpoint: str, response: httpx.Response, data: Any, problem: BaseException,
                          request_id: str | None) -> bool:
    """Whether a status/result answer marked as an error still says the job ended: a 2xx with an
    ``error_code`` (``{"status": "failed", "error_code": 500001, ...}``), or an error status
    (a 500 for a failed job) whose body names this very request as failed or cancelled. That is
    the job's own outcome, to be recorded, not a failed request to retry. Never so: a refused
    token, a 429 (a rate limit, whatever its body says), a gateway's ``{"status": "error"}`` or
    a body about no request, nor an error status saying ``completed`` (its output, if any, is
    not to be trusted: asked again)."""
    if endpoint not in ("status", "result") or isinstance(problem, AuthError) or not isinstance(data, Mapping):
        return False
    status = known_status(data.get("status"))
    if status not in TERMINAL:
        return False
    if response.is_success:
        return True
    return (not isinstance(problem, RateLimitedError) and status in (FAILED, CANCELLED)
            and request_id is not None and data.get("request_id") == request_id)


def _quote_id(request_id: str) -> str:
    """A request id, exactly as RunComfy gave it, made safe as one path segment (an odd id can
    never reach another path): every reserved character is percent-encoded, and so are the dots
    of an id that is all dots, which would otherwise be resolved away as `.` or `..`."""
    if not isinstance(request_id, str) or not request_id.strip():
        raise RequestNotFoundError("empty request id")
    if set(request_id) == {"."}:
        return "%2E" * len(request_id)
    return quote(request_id, safe="")
