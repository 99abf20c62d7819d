"""Every error batchrun raises on purpose, split by what the caller should do about it.

::

    BatchrunError                      root; ``exit_code`` says how the CLI ends
    ├── UserError (exit 2)             the user can fix it; printed as one line per problem
    │   ├── ManifestError              bad manifest/CSV: carries every Problem found
    │   ├── ConfigError                bad flag, env var, price file or settings
    │   ├── DatabaseError              corrupt, foreign, newer-schema or locked database
    │   │   └── DatabaseBusyError      another runner holds the campaign database
    │   └── AuthError                  token missing, expired or revoked (stops the run)
    ├── ApiError                       RunComfy answered with an error or not at all
    │   ├── TransientApiError          worth retrying: 429, 5xx, transport failure, timeout
    │   │   └── RateLimitedError       429; ``retry_after`` seconds when the server said
    │   └── PermanentApiError          retrying cannot help; fails the job
    │       ├── UnknownModelError      400001
    │       ├── ForbiddenError         403001 / 403003
    │       ├── RequestNotFoundError   404001
    │       ├── ValidationRejectedError 422001 (``detail`` from the server)
    │       ├── InsufficientBalanceError 400002: stop submitting, keep polling in-flight jobs
    │       └── UnexpectedAnswerError  an undocumented refusal to a poll (api/responses.py):
    │                                  asked again a few times before the job fails
    └── DownloadError                  a result file could not be fetched
        ├── TransientDownloadError     truncated, reset, 5xx: retried (with Range)
        └── PermanentDownloadError     refused URL, too large, 4xx

The class docstring is the default message; context (job key, URL, manifest location) rides as
attributes so messages stay one line and never carry the API token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class Location:
    """Where a problem sits: a file and, when known, a 1-based line and column."""

    path: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        parts = [self.path]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)


@dataclass(frozen=True)
class Problem:
    """One user mistake, printed as ``path:line:col: field: message``."""

    location: Location
    field: str
    message: str

    def __str__(self) -> str:
        field = f" {self.field}:" if self.field else ""
        return f"{self.location}:{field} {self.message}"


class BatchrunError(Exception):
    """batchrun failed."""

    exit_code = 1

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.message = message or (self.__doc__ or self.__class__.__name__).strip().splitlines()[0]
        self.context = context
        for name, value in context.items():
            setattr(self, name, value)
        super().__init__(self.message)

    def lines(self) -> list[str]:
        """The lines the CLI prints for this error (one, unless a subclass collects several)."""
        return [self.message]


class UserError(BatchrunError):
    """Something the user can fix."""

    exit_code = 2


class ManifestError(UserError):
    """The manifest has problems."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = sorted(
            problems, key=lambda p: (p.location.path, p.location.line or 0, p.location.column or 0)
        )
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"{len(self.problems)} {noun} in the manifest")

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]


class ConfigError(UserError):
    """The configuration is invalid."""


class DatabaseError(UserError):
    """The database cannot be used."""


class DatabaseBusyError(DatabaseError):
    """Another batchrun process is running this database."""


class AuthError(UserError):
    """RunComfy rejected the API token (missing, expired or revoked); set RUNCOMFY_API_TOKEN."""


class ApiError(BatchrunError):
    """RunComfy answered with an error."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        error_code: int | None = None,
        detail: Any = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.status_code = status_code
        self.error_code = error_code
        self.detail = detail


class TransientApiError(ApiError):
    """RunComfy is temporarily unavailable.

    An error it may recover from (a 5xx, 500001, no answer): the caller retries, and the message,
    shown once the retries are spent, promises nothing more."""


class RateLimitedError(TransientApiError):
    """RunComfy asked us to slow down (HTTP 429)."""

    def __init__(self, message: str | None = None, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class PermanentApiError(ApiError):
    """RunComfy refused the request; retrying cannot help."""


class UnknownModelError(PermanentApiError):
    """RunComfy does not know this model id."""


class ForbiddenError(PermanentApiError):
    """The request belongs to another account or is forbidden."""


class RequestNotFoundError(PermanentApiError):
    """RunComfy does not know this request id (unknown, deleted or expired)."""


class ValidationRejectedError(PermanentApiError):
    """RunComfy rejected the job's input."""


class InsufficientBalanceError(PermanentApiError):
    """The RunComfy account has insufficient balance; no new jobs are submitted."""


class DownloadError(BatchrunError):
    """A result file could not be downloaded."""


class TransientDownloadError(DownloadError):
    """A download was interrupted or truncated; it will be retried."""


class PermanentDownloadError(DownloadError):
    """A result file was refused (bad URL, too large or gone)."""


class MissingFileError(PermanentDownloadError):
    """The file server answered 404/410: the file is gone (results are deleted after days), or not
    there yet (a host that has not caught up with a job that finished a moment ago)."""


class NotAFileError(PermanentDownloadError):
    """The file server answered 2xx but sent no file: an empty body or a web page. Asking the same
    URL again gets the same, but the paid-for video may still come under a fresh URL or later."""


def problems_of(errors: Sequence[BatchrunError]) -> list[str]:
    """Flatten several errors into the lines the CLI prints."""
    return [line for error in errors for line in error.lines()]


def message_of(error: BaseException) -> str:
    """The one line a user reads about any error: ours carry their message, others their type."""
    if isinstance(error, BatchrunError):
        return error.message
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
