"""On PostgreSQL the ledger is append-only for real: a trigger refuses UPDATE and DELETE."""

from __future__ import annotations

import asyncpg
import pytest

from tests.profiles import asyncpg_dsn, create_database, drop_database


async def test_postgresql_refuses_to_change_or_delete_ledger_rows(postgres_url: str) -> None:
    url = await create_database(postgres_url)
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute(
                "INSERT INTO payments_ledger_transactions (id, reference, kind, posted_at) "
                "VALUES ('ltx_1', 'capture:pay_1', 'ride', now())"
            )
            await conn.execute(
                "INSERT INTO payments_ledger_entries (transaction_id, account, amount, currency,"
                " line) VALUES ('ltx_1', 'provider_clearing', 5.00, 'USD', 'charge'),"
                " ('ltx_1', 'platform:commission', -5.00, 'USD', 'commission')"
            )
            for sql in (
                "UPDATE payments_ledger_entries SET amount = 6.00",
                "DELETE FROM payments_ledger_entries",
                "UPDATE payments_ledger_transactions SET kind = 'x'",
                "DELETE FROM payments_ledger_transactions",
            ):
                with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
                    await conn.execute(sql)
            total = await conn.fetchval("SELECT sum(amount) FROM payments_ledger_entries")
            assert total == 0
            assert await conn.fetchval("SELECT count(*) FROM payments_ledger_entries") == 2
        finally:
            await conn.close()
    finally:
        await drop_database(postgres_url, url)
