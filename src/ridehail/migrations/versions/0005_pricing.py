"""pricing: surge cells, the surge locked into each ride, its pickup cell and route

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pricing_surge_cells",
        sa.Column("cell", sa.String(length=16), nullable=False),
        sa.Column("resolution", sa.Integer(), nullable=False),
        sa.Column("multiplier", sa.String(length=8), nullable=False),
        sa.Column("demand", sa.Integer(), nullable=False),
        sa.Column("supply", sa.Integer(), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=False),
        sa.Column("longitude", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cell", name=op.f("pk_pricing_surge_cells")),
    )
    with op.batch_alter_table("rides_rides") as batch:
        batch.add_column(sa.Column("surge_multiplier", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("pickup_cell", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("route_points", sa.JSON(), nullable=True))
    op.create_index("ix_rides_rides_created_at", "rides_rides", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rides_rides_created_at", table_name="rides_rides")
    with op.batch_alter_table("rides_rides") as batch:
        batch.drop_column("route_points")
        batch.drop_column("pickup_cell")
        batch.drop_column("surge_multiplier")
    op.drop_table("pricing_surge_cells")
