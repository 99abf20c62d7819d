"""The RunComfy Model API's wire vocabulary, shared by the client and the simulator.

Constants only (paths, status words, error codes): no logic, so the simulator cannot
accidentally agree with a bug in the client. See ../shared/runcomfy/API.md.
"""

from __future__ import annotations

DEFAULT_BASE_URL = "https://model-api.runcomfy.net"
TOKEN_ENV = "RUNCOMFY_API_TOKEN"
BASE_URL_ENV = "RUNCOMFY_BASE_URL"


def submit_path(model_id: str) -> str:
    return f"/v1/models/{model_id}"


def status_path(request_id: str) -> str:
    return f"/v1/requests/{request_id}/status"


def result_path(request_id: str) -> str:
    return f"/v1/requests/{request_id}/result"


def cancel_path(request_id: str) -> str:
    return f"/v1/requests/{request_id}/cancel"


# Status words. The documented ones, plus spellings the client must also accept as terminal.
IN_QUEUE = "in_queue"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
CANCELLED = "cancelled"
FAILED = "failed"
SUCCEEDED = "succeeded"  # tolerated spelling of completed
CANCELED = "canceled"  # tolerated spelling of cancelled

SUCCESS_STATUSES = frozenset({COMPLETED, SUCCEEDED})
CANCELLED_STATUSES = frozenset({CANCELLED, CANCELED})
FAILED_STATUSES = frozenset({FAILED, "error", "errored"})
TERMINAL_STATUSES = SUCCESS_STATUSES | CANCELLED_STATUSES | FAILED_STATUSES
RUNNING_STATUSES = frozenset({IN_PROGRESS, "running", "processing"})
QUEUED_STATUSES = frozenset({IN_QUEUE, "queued", "pending"})

# Cancel outcomes
OUTCOME_CANCELLED = "cancelled"
OUTCOME_NOT_CANCELLABLE = "not_cancellable"

# Published error codes
ERR_UNKNOWN_MODEL = 400001
ERR_INSUFFICIENT_BALANCE = 400002
ERR_TOKEN_MISSING = 400004
ERR_UNAUTHORIZED = 401001
ERR_OTHER_ACCOUNT = 403001
ERR_FORBIDDEN = 403003
ERR_REQUEST_NOT_FOUND = 404001
ERR_VALIDATION = 422001
ERR_INTERNAL = 500001

# Keys of the output object that hold result URLs (a string or a list of strings each).
OUTPUT_URL_KEYS = ("video", "videos", "image", "images")
