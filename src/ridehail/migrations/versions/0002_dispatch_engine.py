"""dispatch engine: candidate log, driver states, one open offer per driver, seats

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 04:00:01.627521
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_PENDING = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "dispatch_candidates",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ride_id", sa.String(length=40), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.String(length=12), nullable=False),
        sa.Column("driver_id", sa.String(length=40), nullable=False),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("eta_s", sa.Float(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("acceptance_rate", sa.Float(), nullable=True),
        sa.Column("idle_s", sa.Float(), nullable=True),
        sa.Column("decision", sa.String(length=12), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=True),
        sa.Column("considered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_candidates")),
    )
    op.create_index(
        "ix_dispatch_candidates_ride_id", "dispatch_candidates", ["ride_id", "id"], unique=False
    )
    op.create_table(
        "dispatch_driver_states",
        sa.Column("driver_id", sa.String(length=40), nullable=False),
        sa.Column("last_trip_ended_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("driver_id", name=op.f("pk_dispatch_driver_states")),
    )
    op.add_column("dispatch_offers", sa.Column("eta_s", sa.Float(), nullable=True))
    # Before the index can exist: of a driver's open offers, only the newest stays open.
    op.execute(
        "UPDATE dispatch_offers SET status = 'withdrawn' WHERE status = 'pending' AND id NOT IN "
        "(SELECT max(id) FROM dispatch_offers WHERE status = 'pending' GROUP BY driver_id)"
    )
    op.create_index(
        "uq_dispatch_offers_one_pending_per_driver",
        "dispatch_offers",
        ["driver_id"],
        unique=True,
        postgresql_where=_PENDING,
        sqlite_where=_PENDING,
    )
    for table in ("dispatch_searches", "rides_rides"):
        op.add_column(table, sa.Column("seats", sa.Integer(), server_default="1", nullable=False))
    op.add_column(
        "dispatch_searches",
        sa.Column("rounds", sa.Integer(), server_default="0", nullable=False),
    )
    op.add_column("dispatch_searches", sa.Column("radius_m", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rides_rides") as batch:
        batch.drop_column("seats")
    with op.batch_alter_table("dispatch_searches") as batch:
        batch.drop_column("radius_m")
        batch.drop_column("rounds")
        batch.drop_column("seats")
    op.drop_index("uq_dispatch_offers_one_pending_per_driver", table_name="dispatch_offers")
    with op.batch_alter_table("dispatch_offers") as batch:
        batch.drop_column("eta_s")
    op.drop_table("dispatch_driver_states")
    op.drop_index("ix_dispatch_candidates_ride_id", table_name="dispatch_candidates")
    op.drop_table("dispatch_candidates")
