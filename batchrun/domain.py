"""Domain values: frozen dataclasses that flow between the layers.

``JobSpec`` comes out of the manifest (what the user asked for); ``Job`` comes out of the store
(what batchrun knows about it now). Neither knows about SQL or HTTP: the store converts its
rows to ``Job`` at its edge.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from batchrun.errors import Location
from batchrun.states import JobState


def canonical_json(value: Any) -> str:
    """A stable JSON text for ``value``: sorted keys, no spaces, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint(model: str, input: Mapping[str, Any]) -> str:
    """sha256 hex of model + canonical input: equal exactly when RunComfy would get the same job."""
    return hashlib.sha256(canonical_json({"model": model, "input": input}).encode()).hexdigest()


@dataclass(frozen=True)
class JobSpec:
    """One generation the manifest asks for, before it touches the store."""

    key: str  #: stable identity within the campaign, e.g. ``hero-t1`` or ``golden-cliff-3f9a21c0-t1``
    model: str  #: RunComfy model id
    input: Mapping[str, Any]  #: exactly the JSON body to POST (only what the user wrote)
    take: int  #: 1-based take number
    output_name: str  #: file name (relative to the output dir) from the filename template
    location: Location  #: where the job comes from in the manifest
    user_id: str | None = None  #: the ``id`` the user gave, if any
    variables: Mapping[str, str] = field(default_factory=dict)  #: matrix/template variables
    fingerprint: str = ""  #: see ``fingerprint()``; filled in by __post_init__ when empty

    def __post_init__(self) -> None:
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", fingerprint(self.model, self.input))


@dataclass(frozen=True)
class Job:
    """A job as the store knows it."""

    id: int
    campaign_id: int
    key: str
    model: str
    input: Mapping[str, Any]
    state: JobState
    output_name: str
    fingerprint: str
    take: int = 1
    revision: int = 1
    request_id: str | None = None
    attempts: int = 0  #: how many times a POST was started for this job
    error: str | None = None
    result_urls: tuple[str, ...] = ()
    output_path: str | None = None
    size: int | None = None
    sha256: str | None = None
    estimated_cost: float | None = None
    created_at: datetime | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class Event:
    """One line of a job's history."""

    job_id: int
    at: datetime
    kind: str  #: ``transition``, ``submit``, ``poll``, ``download``, ``plan`` ...
    from_state: JobState | None
    to_state: JobState | None
    detail: Mapping[str, Any] = field(default_factory=dict)
