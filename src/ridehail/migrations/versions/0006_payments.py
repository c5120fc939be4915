"""payments: payment methods, payments, refunds and the double-entry ledger

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 08:00:00
"""

from __future__ import annotations

from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_ACTIVE_DEFAULT_SQL = "is_default AND removed_at IS NULL"
_ACTIVE_CASH_SQL = "type = 'cash' AND removed_at IS NULL"
_LEDGER_TABLES = ("payments_ledger_transactions", "payments_ledger_entries")


def _amount() -> sa.Numeric[Decimal]:
    return sa.Numeric(precision=12, scale=2)


def upgrade() -> None:
    op.create_table(
        "payments_methods",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("rider_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("provider_token", sa.String(length=120), nullable=True),
        sa.Column("brand", sa.String(length=20), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_methods")),
    )
    op.create_index("ix_payments_methods_rider_id_id", "payments_methods", ["rider_id", "id"])
    op.create_index(
        "uq_payments_methods_one_default_per_rider",
        "payments_methods",
        ["rider_id"],
        unique=True,
        postgresql_where=sa.text(_ACTIVE_DEFAULT_SQL),
        sqlite_where=sa.text(_ACTIVE_DEFAULT_SQL),
    )
    op.create_index(
        "uq_payments_methods_one_cash_per_rider",
        "payments_methods",
        ["rider_id"],
        unique=True,
        postgresql_where=sa.text(_ACTIVE_CASH_SQL),
        sqlite_where=sa.text(_ACTIVE_CASH_SQL),
    )

    op.create_table(
        "payments_payments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("ride_id", sa.String(length=40), nullable=False),
        sa.Column("rider_id", sa.String(length=40), nullable=False),
        sa.Column("driver_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=8), nullable=False),
        sa.Column("payment_method_id", sa.String(length=40), nullable=True),
        sa.Column("provider_token", sa.String(length=120), nullable=True),
        sa.Column("brand", sa.String(length=20), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("amount", _amount(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("booking_fee", _amount(), nullable=False),
        sa.Column("commission", _amount(), nullable=False),
        sa.Column("driver_earning", _amount(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("attempts_at_retry", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_outcome", sa.String(length=12), nullable=True),
        sa.Column("failure_code", sa.String(length=40), nullable=True),
        sa.Column("failure_reason", sa.String(length=200), nullable=True),
        sa.Column("provider_charge_id", sa.String(length=64), nullable=True),
        sa.Column("refunded_amount", _amount(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("captured_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_payments")),
        sa.UniqueConstraint("ride_id", name=op.f("uq_payments_payments_ride_id")),
    )
    op.create_index(
        "ix_payments_payments_status_next_attempt_at",
        "payments_payments",
        ["status", "next_attempt_at"],
    )
    op.create_index("ix_payments_payments_rider_id_id", "payments_payments", ["rider_id", "id"])

    op.create_table(
        "payments_refunds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("amount", _amount(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("requested_by", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_refund_id", sa.String(length=64), nullable=True),
        sa.Column("failure_reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_refunds")),
    )
    op.create_index("ix_payments_refunds_payment_id", "payments_refunds", ["payment_id"])
    op.create_index(
        "ix_payments_refunds_status_next_attempt_at",
        "payments_refunds",
        ["status", "next_attempt_at"],
    )

    op.create_table(
        "payments_ledger_transactions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("reference", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("ride_id", sa.String(length=40), nullable=True),
        sa.Column("driver_id", sa.String(length=40), nullable=True),
        sa.Column("method", sa.String(length=8), nullable=True),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_ledger_transactions")),
        sa.UniqueConstraint("reference", name=op.f("uq_payments_ledger_transactions_reference")),
    )
    op.create_index(
        "ix_payments_ledger_transactions_posted_at",
        "payments_ledger_transactions",
        ["posted_at"],
    )
    op.create_index(
        "ix_payments_ledger_transactions_driver_id_posted_at",
        "payments_ledger_transactions",
        ["driver_id", "posted_at"],
    )

    op.create_table(
        "payments_ledger_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("transaction_id", sa.String(length=40), nullable=False),
        sa.Column("account", sa.String(length=80), nullable=False),
        sa.Column("amount", _amount(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("line", sa.String(length=24), nullable=False),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["payments_ledger_transactions.id"],
            name=op.f("fk_payments_ledger_entries_transaction_id_payments_ledger_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_ledger_entries")),
    )
    op.create_index(
        "ix_payments_ledger_entries_transaction_id", "payments_ledger_entries", ["transaction_id"]
    )
    op.create_index("ix_payments_ledger_entries_account", "payments_ledger_entries", ["account"])

    if op.get_bind().dialect.name == "postgresql":
        # Append-only for real: the ledger refuses UPDATE and DELETE (TRUNCATE, an operator's
        # deliberate act, is left alone).
        op.execute(
            """
            CREATE FUNCTION payments_ledger_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'the ledger is append-only: % on % refused',
                    TG_OP, TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        for table in _LEDGER_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION payments_ledger_append_only()"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _LEDGER_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS payments_ledger_append_only()")
    op.drop_index("ix_payments_ledger_entries_account", table_name="payments_ledger_entries")
    op.drop_index("ix_payments_ledger_entries_transaction_id", table_name="payments_ledger_entries")
    op.drop_table("payments_ledger_entries")
    op.drop_index(
        "ix_payments_ledger_transactions_driver_id_posted_at",
        table_name="payments_ledger_transactions",
    )
    op.drop_index(
        "ix_payments_ledger_transactions_posted_at", table_name="payments_ledger_transactions"
    )
    op.drop_table("payments_ledger_transactions")
    op.drop_index("ix_payments_refunds_status_next_attempt_at", table_name="payments_refunds")
    op.drop_index("ix_payments_refunds_payment_id", table_name="payments_refunds")
    op.drop_table("payments_refunds")
    op.drop_index("ix_payments_payments_rider_id_id", table_name="payments_payments")
    op.drop_index("ix_payments_payments_status_next_attempt_at", table_name="payments_payments")
    op.drop_table("payments_payments")
    op.drop_index("uq_payments_methods_one_cash_per_rider", table_name="payments_methods")
    op.drop_index("uq_payments_methods_one_default_per_rider", table_name="payments_methods")
    op.drop_index("ix_payments_methods_rider_id_id", table_name="payments_methods")
    op.drop_table("payments_methods")
