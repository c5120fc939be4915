"""Payments workers killed with SIGKILL 50 times under a stream of completed rides, on the
production profile (PostgreSQL, Redis Streams, real processes): every completed ride is
charged exactly once by the sandbox processor's own record, every payment ends captured,
the ledger balances, and each payment's PaymentCaptured event is written once.

An API process (`serve --role api`: HTTP plus the outbox relay) and a dispatch worker serve
six riders who each ride with their own driver (far apart, so each ride is offered to its
rider's driver), over and over, paying by card (approving, timing out once, flaky) or cash.
Four `ridehail worker payments` processes charge the rides; they are killed in turn at random
moments (each one once it is up again) and restarted at once. The sandbox answers in 50-100
ms and writes its record halfway through, so kills land before a charge, between the charge
and its answer, and between the answer and our record of it; the test counts the calls that
were interrupted after the charge (the next claim got the charge replayed by its key).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from ridehail.kernel.geo import offset
from tests import profiles
from tests.api.client import Api, User
from tests.e2e.conftest import Processes, free_port, server_env

pytestmark = pytest.mark.e2e

SEED = 5_050
KILLS = 50
#: Killed in turn; each is up again (restarted three kills ago) by the time its turn comes.
WORKERS = 4
PAIRS = 4
TOKENS = ["tok_visa", "tok_timeout", "tok_flaky", "cash"]
HOME = (60.1699, 24.9384)
SETTLE_WITHIN_S = 30.0


def pair_home(index: int) -> tuple[float, float]:
    """Each pair 20 km from the next: beyond the dispatch radius of one another."""
    return offset(*HOME, north_m=20_000.0 * index, east_m=0.0)


class RemoteApi(Api):
    def __init__(self, http: httpx.AsyncClient) -> None:
        super().__init__(http, app=cast(FastAPI, None))


async def fetch(dsn: str, sql: str) -> list[dict[str, Any]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [dict(r) for r in await conn.fetch(sql)]
    finally:
        await conn.close()


def sandbox_rows(path: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(path, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def tail(log: Path, chars: int = 2500) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"


class PaymentWorkers:
    """The payments workers, restartable, each start with its own log."""

    def __init__(self, processes: Processes, env: dict[str, str], count: int) -> None:
        self.processes = processes
        self.env = env
        self.starts = 0
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = [
            self.start() for _ in range(count)
        ]
        self.kills: list[int] = []

    def start(self) -> tuple[subprocess.Popen[bytes], Path]:
        self.starts += 1
        name = f"payments-{self.starts:03d}"
        proc = self.processes.start(["worker", "payments"], self.env, name)
        return proc, self.processes.logs / f"{name}.log"

    @staticmethod
    def up(proc: subprocess.Popen[bytes], log: Path) -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"a payments worker exited by itself:\n{tail(log)}")
        return "running" in log.read_text(errors="replace")

    async def kill_when_up(self, index: int, rng: random.Random) -> None:
        proc, log = self.procs[index]
        deadline = time.monotonic() + 30
        while not self.up(proc, log):
            if time.monotonic() > deadline:
                raise AssertionError(f"payments worker never came up:\n{tail(log)}")
            await asyncio.sleep(0.02)
        await asyncio.sleep(rng.uniform(0.05, 0.5))
        os.kill(proc.pid, signal.SIGKILL)
        self.kills.append(await asyncio.to_thread(proc.wait, 10))
        self.procs[index] = self.start()


@pytest.mark.usefixtures("quiet_httpx")
async def test_payments_workers_killed_50_times_charge_every_ride_once(
    pg_db: str, redis_url: str, redis_prefix: str, processes: Processes, tmp_path: Path
) -> None:
    sandbox = tmp_path / "sandbox.db"
    env = server_env(
        {
            "RIDEHAIL_DATABASE_URL": pg_db,
            "RIDEHAIL_REDIS_URL": redis_url,
            "RIDEHAIL_REDIS_KEY_PREFIX": redis_prefix,
            "RIDEHAIL_BUS_CLAIM_IDLE_S": "0.5",
            "RIDEHAIL_PAYMENTS_SANDBOX_PATH": str(sandbox),
            "RIDEHAIL_PAYMENTS_SANDBOX_LATENCY_MIN_MS": "50",
            "RIDEHAIL_PAYMENTS_SANDBOX_LATENCY_MAX_MS": "100",
            "RIDEHAIL_PAYMENTS_LEASE_S": "1.5",
            "RIDEHAIL_PAYMENTS_PROVIDER_TIMEOUT_S": "1.0",
            "RIDEHAIL_PAYMENTS_RETRY_BASE_S": "0.05",
            "RIDEHAIL_PAYMENTS_RETRY_CAP_S": "0.5",
            "RIDEHAIL_PAYMENTS_POLL_S": "0.1",
            "RIDEHAIL_PAYMENTS_CONCURRENCY": "4",
            # Killed claims count as attempts: enough room that no payment runs out.
            "RIDEHAIL_PAYMENTS_MAX_ATTEMPTS": "100",
            "PYTHONUNBUFFERED": "1",
        }
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    processes.start(["serve", "--role", "api", "--port", str(port)], env, "api")
    processes.start(["worker", "dispatch"], env, "dispatch")
    workers = PaymentWorkers(processes, env, count=WORKERS)
    processes.wait_ready(base)
    dsn = profiles.asyncpg_dsn(pg_db)
    rng = random.Random(SEED)
    completed: list[str] = []
    stop = asyncio.Event()

    async with httpx.AsyncClient(base_url=base, timeout=20) as http:
        api = RemoteApi(http)

        async def rides_of(index: int) -> None:
            rider = await api.rider(f"R{index}")
            driver = await api.driver(f"D{index}", plate=f"PAY-{index}")
            token = TOKENS[index % len(TOKENS)]
            body = {"type": "cash"} if token == "cash" else {"type": "card", "token": token}
            added = await http.post(
                "/api/v1/riders/me/payment-methods", json=body, headers=rider.headers
            )
            assert added.status_code == 201, added.text
            home = pair_home(index)
            await api.go_online(driver, *offset(*home, north_m=150, east_m=0))
            while not stop.is_set():
                await drive_one(rider, driver, home)

        async def drive_one(rider: User, driver: User, home: tuple[float, float]) -> None:
            await api.move(driver, *offset(*home, north_m=150, east_m=0))
            ride = await api.request_ride(rider, home, offset(*home, north_m=2000, east_m=0))
            ride_id = ride["ride_id"]
            await api.wait_for_offer(driver, ride_id, timeout=15)
            for verb in ("accept", "arrive", "start", "complete"):
                resp = await api.act(driver, ride_id, verb)
                assert resp.status_code == 200, f"{verb} {ride_id}: {resp.text}"
            completed.append(ride_id)

        riders = [asyncio.create_task(rides_of(i)) for i in range(PAIRS)]
        began = time.monotonic()
        try:
            for kill in range(KILLS):
                await workers.kill_when_up(kill % WORKERS, rng)
                for task in riders:
                    if task.done():
                        task.result()  # a rider's failure fails the test at once
        finally:
            stop.set()
            results = await asyncio.gather(*riders, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        print(f"{KILLS} kills in {time.monotonic() - began:.1f}s; {len(completed)} rides")
        assert workers.kills == [-signal.SIGKILL] * KILLS

        async def settled() -> bool:
            rows = await fetch(dsn, "SELECT status FROM payments_payments")
            return len(rows) == len(completed) and all(r["status"] == "captured" for r in rows)

        deadline = time.monotonic() + SETTLE_WITHIN_S
        while not await settled():
            if time.monotonic() > deadline:
                states = await fetch(
                    dsn,
                    "SELECT status, count(*) AS n, max(attempts) AS attempts "
                    "FROM payments_payments GROUP BY status",
                )
                logs = "\n".join(f"--- {log.name}\n{tail(log)}" for _, log in workers.procs)
                raise AssertionError(
                    f"{len(completed)} rides completed; payments: {states}\n{logs}"
                )
            await asyncio.sleep(0.2)

    # Every completed ride has one captured payment, for its fare.
    payments = {
        p["ride_id"]: p
        for p in await fetch(
            dsn, "SELECT id, ride_id, method, amount, status, attempts FROM payments_payments"
        )
    }
    fares = {
        r["id"]: r["fare"]
        for r in await fetch(
            dsn, "SELECT id, fare->>'amount' AS fare FROM rides_rides WHERE status = 'completed'"
        )
    }
    assert sorted(payments) == sorted(completed) == sorted(fares)
    assert all(str(p["amount"]) == fares[ride] for ride, p in payments.items())

    # The processor's own record: exactly one approved charge per card ride, for its amount,
    # under the payment's first (and only) idempotency key; none for cash.
    charges = sandbox_rows(sandbox, "SELECT * FROM charges")
    approved = Counter(c["ride_id"] for c in charges if c["status"] == "succeeded")
    card_rides = {ride for ride, p in payments.items() if p["method"] == "card"}
    assert set(approved) == card_rides
    assert set(approved.values()) == {1}, [r for r, n in approved.items() if n > 1]
    for c in charges:
        payment = payments[c["ride_id"]]
        assert c["idempotency_key"] == f"{payment['id']}:1"
        assert c["amount"] == str(payment["amount"])

    # The ledger balances per transaction and overall; one capture per payment.
    unbalanced = await fetch(
        dsn,
        "SELECT transaction_id, currency, sum(amount) AS total FROM payments_ledger_entries "
        "GROUP BY transaction_id, currency HAVING sum(amount) <> 0",
    )
    assert unbalanced == []
    overall = await fetch(dsn, "SELECT coalesce(sum(amount), 0) AS s FROM payments_ledger_entries")
    assert overall[0]["s"] == 0
    captures = await fetch(
        dsn,
        "SELECT payment_id, count(*) AS n FROM payments_ledger_transactions GROUP BY payment_id",
    )
    assert {c["payment_id"]: c["n"] for c in captures} == {p["id"]: 1 for p in payments.values()}

    # PaymentCaptured written once per payment (what notifications react to).
    events = await fetch(
        dsn,
        "SELECT payload->>'payment_id' AS payment_id, count(*) AS n FROM outbox_events "
        "WHERE topic = 'payments.captured' GROUP BY 1",
    )
    assert {e["payment_id"]: e["n"] for e in events} == {p["id"]: 1 for p in payments.values()}

    # How the kills landed: claims taken over after a lease expired, and provider calls
    # whose charge happened but whose answer died with its worker (replayed to the next
    # claim; tok_timeout's own lost answers aside).
    token_of = {c["idempotency_key"]: c["token"] for c in charges}
    requests = sandbox_rows(sandbox, "SELECT idempotency_key, outcome FROM requests")
    cut_after_charge = [
        r
        for r in requests
        if r["outcome"].startswith("replayed") and token_of[r["idempotency_key"]] != "tok_timeout"
    ]
    retried = sum(1 for p in payments.values() if p["attempts"] > 1)
    print(
        f"payments: {len(payments)} ({len(card_rides)} card); provider calls: {len(requests)}; "
        f"answers lost with a killed worker and replayed: {len(cut_after_charge)}; "
        f"payments attempted more than once: {retried}"
    )
    assert cut_after_charge, "no kill landed between a charge and its record"
