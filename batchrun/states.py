"""The job state machine: what a job can be, and which moves between states are allowed.

Pure: no I/O. The store records every transition in the events table; the pool asks
``can_transition`` before every move, so an illegal move is a bug, not silent corruption.

::

    pending -> submitting -> queued -> running -> downloading -> done
        \\           \\          \\         \\            \\-> failed
         \\           \\          \\-> cancelled       (any active state) -> failed
          \\-> cancelled \\-> (resume decides: queued | pending | failed)
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    PENDING = "pending"  #: planned, never sent to RunComfy; safe to submit
    SUBMITTING = "submitting"  #: the POST is (or was) under way; the request id is not known yet
    QUEUED = "queued"  #: RunComfy has a request id for it and reports it queued
    RUNNING = "running"  #: RunComfy is generating it (billed from here on)
    DOWNLOADING = "downloading"  #: finished at RunComfy; its files are being fetched
    DONE = "done"  #: every file is on disk and verified
    FAILED = "failed"  #: gave up; ``error`` says why
    CANCELLED = "cancelled"  #: cancelled before it ran (locally or at RunComfy)

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_in_flight(self) -> bool:
        """Submitted (or possibly submitted) and not finished: counts against the concurrency cap."""
        return self in IN_FLIGHT


TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
IN_FLIGHT = frozenset({JobState.SUBMITTING, JobState.QUEUED, JobState.RUNNING})
#: states a job with a request id can be in while RunComfy still works on it
AT_RUNCOMFY = frozenset({JobState.QUEUED, JobState.RUNNING})

_ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.SUBMITTING, JobState.CANCELLED, JobState.FAILED}),
    JobState.SUBMITTING: frozenset(
        {
            JobState.QUEUED,  # the POST answered with a request id
            JobState.PENDING,  # the POST certainly did not reach RunComfy, or the user chose to resubmit
            JobState.FAILED,  # the POST was refused (4xx), or the user gave up on it
            JobState.CANCELLED,
        }
    ),
    JobState.QUEUED: frozenset(
        {JobState.RUNNING, JobState.DOWNLOADING, JobState.FAILED, JobState.CANCELLED}
    ),
    JobState.RUNNING: frozenset({JobState.DOWNLOADING, JobState.FAILED, JobState.CANCELLED}),
    JobState.DOWNLOADING: frozenset({JobState.DONE, JobState.FAILED}),
    # a done job whose file went missing or corrupt is fetched again
    JobState.DONE: frozenset({JobState.DOWNLOADING, JobState.PENDING}),
    # retry puts failed and cancelled jobs back to pending, keeping their history
    JobState.FAILED: frozenset({JobState.PENDING}),
    JobState.CANCELLED: frozenset({JobState.PENDING}),
}


def allowed_transitions(state: JobState) -> frozenset[JobState]:
    """The states a job in ``state`` may move to."""
    return _ALLOWED[state]


def can_transition(current: JobState, new: JobState) -> bool:
    """True when moving a job from ``current`` to ``new`` is legal (staying put is not a move)."""
    return new in _ALLOWED[current]
