"""The SQLAlchemy mapped classes: the database's shape, and nothing else.

These never leave ``batchrun.store``: the repository converts rows to the frozen domain values
(``Job``, ``Event``) at its edge. The migrations in ``batchrun.migrations`` must produce exactly
this metadata (a test compares them).

::

    batchrun_meta  key/value facts: this is a batchrun database (``application = batchrun``)
    campaigns      one per manifest campaign (unique name)
    jobs           one row per (campaign, key, revision); exactly one row per key has
                   ``superseded_at IS NULL`` (the active revision); rows are never deleted
    events         append-only history of every job (transitions, plans, retries, polls)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from batchrun.store.types import JSONText, UTCDateTime

#: value of ``batchrun_meta.application`` that marks a database as ours
APPLICATION = "batchrun"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONText(), list[str]: JSONText()}


class Meta(Base):
    """Facts about the database itself."""

    __tablename__ = "batchrun_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class CampaignRow(Base):
    """A campaign: a named manifest and where its outputs go."""

    __tablename__ = "campaigns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    manifest_path: Mapped[str] = mapped_column(Text)
    output_dir: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict[str, Any]]
    #: estimated USD of every submission attempt of the campaign, counted where the budget is
    #: checked (``Store.begin_submit``), so runners sharing the campaign share one budget
    committed_usd: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class JobRow(Base):
    """One revision of one job."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("campaign_id", "key", "revision"),
        Index("ix_jobs_campaign_id_state", "campaign_id", "state"),
        # the in-flight count reads live claims and submits by range, not the whole campaign
        Index("ix_jobs_campaign_id_state_lease", "campaign_id", "state", "lease_expires_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"))
    key: Mapped[str] = mapped_column(String(255))
    revision: Mapped[int] = mapped_column(Integer)
    superseded_at: Mapped[datetime | None]
    model: Mapped[str] = mapped_column(String(255))
    input: Mapped[dict[str, Any]]
    fingerprint: Mapped[str] = mapped_column(String(64))
    take: Mapped[int] = mapped_column(Integer)
    output_name: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(255), index=True)
    attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    result_urls: Mapped[list[str]]
    output_path: Mapped[str | None] = mapped_column(Text, index=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    estimated_cost: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]
    #: reserved for several runners sharing one database (unused for now)
    runner_id: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]


class EventRow(Base):
    """One line of a job's history."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]]


metadata = Base.metadata
campaigns = CampaignRow.__table__
jobs = JobRow.__table__
events = EventRow.__table__
meta = Meta.__table__
