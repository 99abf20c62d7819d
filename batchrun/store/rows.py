"""Converting rows to the frozen values the rest of batchrun sees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Row

from batchrun.domain import Event, Job
from batchrun.states import JobState


@dataclass(frozen=True)
class CampaignRecord:
    """A campaign as the store knows it."""

    id: int
    name: str
    manifest_path: str
    output_dir: str
    settings: Mapping[str, Any]
    created_at: datetime


def to_job(row: Row[Any]) -> Job:
    m = row._mapping
    return Job(
        id=m["id"],
        campaign_id=m["campaign_id"],
        key=m["key"],
        model=m["model"],
        input=m["input"],
        state=JobState(m["state"]),
        output_name=m["output_name"],
        fingerprint=m["fingerprint"],
        take=m["take"],
        revision=m["revision"],
        request_id=m["request_id"],
        attempts=m["attempts"],
        error=m["error"],
        result_urls=tuple(m["result_urls"] or ()),
        output_path=m["output_path"],
        size=m["size"],
        sha256=m["sha256"],
        estimated_cost=m["estimated_cost"],
        created_at=m["created_at"],
        submitted_at=m["submitted_at"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
        updated_at=m["updated_at"],
    )


def to_event(row: Row[Any]) -> Event:
    m = row._mapping
    return Event(
        job_id=m["job_id"],
        at=m["at"],
        kind=m["kind"],
        from_state=JobState(m["from_state"]) if m["from_state"] else None,
        to_state=JobState(m["to_state"]) if m["to_state"] else None,
        detail=m["detail"] or {},
    )


def to_campaign(row: Row[Any]) -> CampaignRecord:
    m = row._mapping
    return CampaignRecord(
        id=m["id"],
        name=m["name"],
        manifest_path=m["manifest_path"],
        output_dir=m["output_dir"],
        settings=m["settings"],
        created_at=m["created_at"],
    )
