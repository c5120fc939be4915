"""`ridehail worker notifications` as its own process on the production profile: events an
API process relays are told to their users by the worker; a worker killed with SIGKILL is
replaced and the next one picks up where it stopped, nothing told twice."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from ridehail.contracts import PaymentFailed
from ridehail.db import Database, add_event
from ridehail.notifications import read_message_log
from tests.e2e.conftest import Processes, free_port, server_env

pytestmark = pytest.mark.e2e


def failed(rider_id: str, ride_id: str) -> PaymentFailed:
    return PaymentFailed(
        payment_id=f"pay_{ride_id}",
        ride_id=ride_id,
        rider_id=rider_id,
        amount="7.50",
        currency="USD",
        reason="card_declined",
        attempts=1,
    )


async def _emit(db: Database, event: PaymentFailed) -> None:
    async with db.transaction() as session:
        add_event(session, event)


async def _lines(path: Path, count: int, timeout: float = 20.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = read_message_log(path)
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.1)
    raise AssertionError(f"{len(read_message_log(path))} of {count} messages were sent")


async def test_the_notifications_worker_survives_a_kill(
    pg_db: str, redis_url: str, redis_prefix: str, processes: Processes, tmp_path: Path
) -> None:
    log = tmp_path / "messages.jsonl"
    env = server_env(
        {
            "RIDEHAIL_DATABASE_URL": pg_db,
            "RIDEHAIL_REDIS_URL": redis_url,
            "RIDEHAIL_REDIS_KEY_PREFIX": redis_prefix,
            "RIDEHAIL_NOTIFICATIONS_LOG_PATH": str(log),
            "RIDEHAIL_NOTIFICATIONS_POLL_S": "0.1",
            "RIDEHAIL_BUS_CLAIM_IDLE_S": "1.0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.start(["serve", "--role", "api", "--port", str(port)], env, "api")
    worker = processes.start(["worker", "notifications"], env, "notifications0")
    processes.wait_ready(base)
    db = Database(pg_db)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            email = "kim@example.com"
            resp = await http.post(
                "/api/v1/riders",
                json={"name": "Kim", "email": email, "password": "s3cret-pass"},
            )
            assert resp.status_code == 201, resp.text
            rider_id = resp.json()["rider_id"]
            token = (
                await http.post(
                    "/api/v1/auth/token", json={"email": email, "password": "s3cret-pass"}
                )
            ).json()["access_token"]

            await _emit(db, failed(rider_id, "ride_1"))
            first = await _lines(log, 1)
            assert first[0]["to"] == email

            worker.kill()
            worker.wait()
            await _emit(db, failed(rider_id, "ride_2"))
            processes.start(["worker", "notifications"], env, "notifications1")
            await _lines(log, 2)
            # A later event told means everything queued before it has been sent.
            await _emit(db, failed(rider_id, "ride_3"))
            lines = await _lines(log, 3)
            assert [line["to"] for line in lines] == [email] * 3
            assert len({line["idempotency_key"] for line in lines}) == 3
            assert not any(line["replayed"] for line in lines)

            inbox = await http.get(
                "/api/v1/notifications", headers={"Authorization": f"Bearer {token}"}
            )
            assert inbox.status_code == 200
            rides = [n["data"]["ride_id"] for n in inbox.json()["notifications"]]
            assert rides == ["ride_3", "ride_2", "ride_1"]
    finally:
        await db.dispose()
