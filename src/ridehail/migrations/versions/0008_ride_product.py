"""rides: the product (fare policy) a ride was requested for

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 07:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rides_rides") as batch:
        batch.add_column(
            sa.Column("product", sa.String(length=32), server_default="standard", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("rides_rides") as batch:
        batch.drop_column("product")
