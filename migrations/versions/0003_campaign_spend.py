"""Keep each campaign's committed spend in its row, so every runner checks one shared budget.

Before, each runner added its own submissions to the spend it read when it started, so two
runners sharing a campaign could each spend the whole budget. The column starts from what the
jobs already record: the estimated cost of each job times the POSTs started for it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("committed_usd", sa.Float(), nullable=False, server_default="0"))
    op.execute(
        "UPDATE campaigns SET committed_usd = (SELECT COALESCE(SUM(jobs.estimated_cost * jobs.attempts), 0)"
        " FROM jobs WHERE jobs.campaign_id = campaigns.id AND jobs.attempts > 0)"
    )


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("committed_usd")
