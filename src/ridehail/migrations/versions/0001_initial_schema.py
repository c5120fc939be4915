"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 22:24:58.308294
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts_users",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts_users")),
        sa.UniqueConstraint("email", name=op.f("uq_accounts_users_email")),
    )
    op.create_table(
        "dispatch_offers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("ride_id", sa.String(length=40), nullable=False),
        sa.Column("driver_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("distance_to_pickup_m", sa.Float(), nullable=False),
        sa.Column("pickup", sa.JSON(), nullable=False),
        sa.Column("dropoff", sa.JSON(), nullable=False),
        sa.Column("fare_estimate", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_offers")),
        sa.UniqueConstraint("ride_id", "driver_id", name="uq_dispatch_offers_ride_driver"),
    )
    with op.batch_alter_table("dispatch_offers", schema=None) as batch_op:
        batch_op.create_index(
            "ix_dispatch_offers_driver_status", ["driver_id", "status"], unique=False
        )
        batch_op.create_index(
            "ix_dispatch_offers_status_expires", ["status", "expires_at"], unique=False
        )

    op.create_table(
        "dispatch_searches",
        sa.Column("ride_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("pickup_latitude", sa.Float(), nullable=False),
        sa.Column("pickup_longitude", sa.Float(), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("ride_id", name=op.f("pk_dispatch_searches")),
    )
    with op.batch_alter_table("dispatch_searches", schema=None) as batch_op:
        batch_op.create_index(
            "ix_dispatch_searches_state_next", ["state", "next_check_at"], unique=False
        )

    op.create_table(
        "drivers_drivers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("license_number", sa.String(length=64), nullable=False),
        sa.Column("vehicle_make", sa.String(length=64), nullable=False),
        sa.Column("vehicle_model", sa.String(length=64), nullable=False),
        sa.Column("vehicle_plate", sa.String(length=32), nullable=False),
        sa.Column("vehicle_color", sa.String(length=32), nullable=True),
        sa.Column("vehicle_seats", sa.Integer(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("availability", sa.String(length=16), nullable=False),
        sa.Column("availability_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drivers_drivers")),
    )
    with op.batch_alter_table("drivers_drivers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_drivers_drivers_availability"), ["availability"], unique=False
        )

    op.create_table(
        "messaging_processed_events",
        sa.Column("consumer", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_messaging_processed_events")),
    )
    op.create_table(
        "outbox_events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("topic", sa.String(length=100), nullable=False),
        sa.Column("aggregate_id", sa.String(length=40), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_events_event_id")),
    )
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_events_unpublished",
            ["seq"],
            unique=False,
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        )

    op.create_table(
        "rides_rides",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("rider_id", sa.String(length=40), nullable=False),
        sa.Column("driver_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("start_latitude", sa.Float(), nullable=False),
        sa.Column("start_longitude", sa.Float(), nullable=False),
        sa.Column("end_latitude", sa.Float(), nullable=False),
        sa.Column("end_longitude", sa.Float(), nullable=False),
        sa.Column("fare_estimate", sa.JSON(), nullable=False),
        sa.Column("fare", sa.JSON(), nullable=True),
        sa.Column("driver_snapshot", sa.JSON(), nullable=True),
        sa.Column("distance_m", sa.Float(), nullable=True),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("cancel_reason", sa.String(length=500), nullable=True),
        sa.Column("cancelled_by", sa.String(length=10), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("arrived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rides_rides")),
    )
    with op.batch_alter_table("rides_rides", schema=None) as batch_op:
        batch_op.create_index("ix_rides_rides_driver_id_id", ["driver_id", "id"], unique=False)
        batch_op.create_index("ix_rides_rides_rider_id_id", ["rider_id", "id"], unique=False)
        batch_op.create_index("ix_rides_rides_status_id", ["status", "id"], unique=False)
        batch_op.create_index(
            "uq_rides_one_active_ride_per_driver",
            ["driver_id"],
            unique=True,
            postgresql_where=sa.text(
                "status IN ('driver_en_route', 'driver_arrived', 'in_progress')"
            ),
            sqlite_where=sa.text("status IN ('driver_en_route', 'driver_arrived', 'in_progress')"),
        )
        batch_op.create_index(
            "uq_rides_one_active_ride_per_rider",
            ["rider_id"],
            unique=True,
            postgresql_where=sa.text(
                "status IN ('searching', 'driver_en_route', 'driver_arrived', 'in_progress')"
            ),
            sqlite_where=sa.text(
                "status IN ('searching', 'driver_en_route', 'driver_arrived', 'in_progress')"
            ),
        )


def downgrade() -> None:
    with op.batch_alter_table("rides_rides", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_rides_one_active_ride_per_rider",
            postgresql_where=sa.text(
                "status IN ('searching', 'driver_en_route', 'driver_arrived', 'in_progress')"
            ),
            sqlite_where=sa.text(
                "status IN ('searching', 'driver_en_route', 'driver_arrived', 'in_progress')"
            ),
        )
        batch_op.drop_index(
            "uq_rides_one_active_ride_per_driver",
            postgresql_where=sa.text(
                "status IN ('driver_en_route', 'driver_arrived', 'in_progress')"
            ),
            sqlite_where=sa.text("status IN ('driver_en_route', 'driver_arrived', 'in_progress')"),
        )
        batch_op.drop_index("ix_rides_rides_status_id")
        batch_op.drop_index("ix_rides_rides_rider_id_id")
        batch_op.drop_index("ix_rides_rides_driver_id_id")

    op.drop_table("rides_rides")
    with op.batch_alter_table("outbox_events", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_outbox_events_unpublished",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        )

    op.drop_table("outbox_events")
    op.drop_table("messaging_processed_events")
    with op.batch_alter_table("drivers_drivers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drivers_drivers_availability"))

    op.drop_table("drivers_drivers")
    with op.batch_alter_table("dispatch_searches", schema=None) as batch_op:
        batch_op.drop_index("ix_dispatch_searches_state_next")

    op.drop_table("dispatch_searches")
    with op.batch_alter_table("dispatch_offers", schema=None) as batch_op:
        batch_op.drop_index("ix_dispatch_offers_status_expires")
        batch_op.drop_index("ix_dispatch_offers_driver_status")

    op.drop_table("dispatch_offers")
    op.drop_table("accounts_users")
