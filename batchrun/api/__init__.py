"""The RunComfy Model API client: ``RunComfyClient`` and the values its calls return."""

from batchrun.api.client import USER_AGENT, RunComfyClient
from batchrun.api.responses import (
    CancelReport,
    ResultReport,
    StatusReport,
    Submission,
    SubmitOutcomeUnknown,
    UnexpectedAnswerError,
    classify_error,
    collect_output_urls,
    normalize_status,
    parse_cancel,
    parse_result,
    parse_status,
    parse_submission,
)

__all__ = [
    "USER_AGENT",
    "CancelReport",
    "ResultReport",
    "RunComfyClient",
    "StatusReport",
    "Submission",
    "SubmitOutcomeUnknown",
    "UnexpectedAnswerError",
    "classify_error",
    "collect_output_urls",
    "normalize_status",
    "parse_cancel",
    "parse_result",
    "parse_status",
    "parse_submission",
]
