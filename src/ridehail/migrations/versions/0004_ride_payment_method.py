"""rides: the payment method chosen at request time

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 06:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rides_rides") as batch:
        batch.add_column(sa.Column("payment_method_id", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rides_rides") as batch:
        batch.drop_column("payment_method_id")
