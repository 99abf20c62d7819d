"""Index jobs by campaign, state and lease, so counting the in-flight cap reads only live claims.

Without it, every claim counted the campaign's jobs by scanning all of them (the lease and
runner live in the table, not in the state index): a claim cost grew with the campaign, about
1 ms per claim at 2,000 jobs and far more at 100,000.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_campaign_id_state_lease", "jobs", ["campaign_id", "state", "lease_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_campaign_id_state_lease", table_name="jobs")
