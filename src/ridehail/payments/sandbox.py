"""The sandbox card processor: the one fake in the system, standing for the card network.

It behaves like a real processor, chosen by test tokens (as Stripe's test mode does):
``tok_visa``, ``tok_mastercard``, ``tok_amex`` approve; ``tok_chargeDeclinedInsufficientFunds``
and ``tok_chargeDeclinedExpiredCard`` decline; ``tok_timeout`` records the charge and then
loses the answer (the caller cannot know it happened); ``tok_flaky`` is unavailable for the
first few calls of each key, then approves; ``tok_refundTimeout`` approves charges and loses
the answer of the first call of each refund.

It honours idempotency keys like Stripe: a repeated key with the same parameters gets the
first answer again (approval or decline), with other parameters an error. Its record is its
own SQLite file (WAL, one transaction per call), shared by every process that points at it
and surviving any of them being killed: it is the proof of what was charged, and how often.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from ridehail.kernel.clock import utcnow
from ridehail.kernel.ids import new_id
from ridehail.payments.provider import (
    CardDetails,
    ChargeResult,
    IdempotencyKeyReused,
    ProviderTimeout,
    ProviderUnavailable,
    RefundResult,
    UnknownToken,
)

APPROVE = "approve"
TIMEOUT = "timeout"
FLAKY = "flaky"
REFUND_TIMEOUT = "refund_timeout"


@dataclass(frozen=True, slots=True)
class TestCard:
    brand: str
    last4: str
    behaviour: str = APPROVE
    decline_code: str | None = None


TEST_CARDS: dict[str, TestCard] = {
    "tok_visa": TestCard("visa", "4242"),
    "tok_mastercard": TestCard("mastercard", "4444"),
    "tok_amex": TestCard("amex", "8431"),
    "tok_chargeDeclinedInsufficientFunds": TestCard(
        "visa", "9995", decline_code="insufficient_funds"
    ),
    "tok_chargeDeclinedExpiredCard": TestCard("visa", "0069", decline_code="expired_card"),
    "tok_timeout": TestCard("visa", "0341", behaviour=TIMEOUT),
    "tok_flaky": TestCard("visa", "1117", behaviour=FLAKY),
    "tok_refundTimeout": TestCard("visa", "5556", behaviour=REFUND_TIMEOUT),
}

DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "invalid_amount": "The amount must be positive.",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    token TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    reference TEXT NOT NULL,
    ride_id TEXT NOT NULL,
    status TEXT NOT NULL,
    decline_code TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_ride_id ON charges (ride_id);
CREATE TABLE IF NOT EXISTS refunds (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    charge_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    failure_code TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    outcome TEXT NOT NULL,
    at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_key ON requests (idempotency_key);
"""


def _fingerprint(**params: str) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class _Refused:
    """A refusal decided inside the transaction, whose record must still be committed."""

    error: Exception


_Answer = tuple[dict[str, Any], bool] | _Refused
_Tx = Callable[[sqlite3.Connection, str, dict[str, str]], _Answer]


class SandboxProvider:
    """A :class:`~ridehail.payments.provider.PaymentProvider` backed by its own SQLite file."""

    def __init__(
        self,
        path: Path,
        *,
        latency_ms: tuple[float, float] = (20.0, 60.0),
        flaky_failures: int = 2,
        rng: random.Random | None = None,
    ) -> None:
        self.path = Path(path)
        self._latency_ms = (min(latency_ms), max(latency_ms))
        self._flaky_failures = flaky_failures
        self._rng = rng or random.Random()  # noqa: S311 - latency jitter, not crypto
        self._ready = False

    # --- the port ------------------------------------------------------------------------

    async def describe_card(self, token: str) -> CardDetails:
        await self._latency(1.0)
        card = TEST_CARDS.get(token)
        if card is None:
            raise UnknownToken(f"no such token: {token}")
        return CardDetails(brand=card.brand, last4=card.last4, exp_month=12, exp_year=2034)

    async def charge(
        self,
        *,
        key: str,
        token: str,
        amount: Decimal,
        currency: str,
        reference: str,
        ride_id: str,
    ) -> ChargeResult:
        params = {
            "token": token,
            "amount": f"{amount:f}",
            "currency": currency,
            "reference": reference,
            "ride_id": ride_id,
        }
        await self._latency(0.5)
        row, lose_answer = await self._run(self._charge_tx, key, params)
        await self._latency(0.5)
        if lose_answer:
            raise ProviderTimeout("the processor did not answer in time")
        return ChargeResult(
            succeeded=row["status"] == "succeeded",
            charge_id=row["id"],
            decline_code=row["decline_code"],
            message=DECLINE_MESSAGES.get(row["decline_code"] or ""),
        )

    async def refund(
        self, *, key: str, charge_id: str, amount: Decimal, currency: str
    ) -> RefundResult:
        params = {"charge_id": charge_id, "amount": f"{amount:f}", "currency": currency}
        await self._latency(0.5)
        row, lose_answer = await self._run(self._refund_tx, key, params)
        await self._latency(0.5)
        if lose_answer:
            raise ProviderTimeout("the processor did not answer in time")
        return RefundResult(
            succeeded=row["status"] == "succeeded",
            refund_id=row["id"],
            failure_code=row["failure_code"],
        )

    async def close(self) -> None:
        return None

    # --- the processor's own record -------------------------------------------------------

    def charges(self) -> list[dict[str, Any]]:
        """Every charge ever recorded (approved and declined), oldest first."""
        return self._read("SELECT * FROM charges ORDER BY created_at, id")

    def refunds(self) -> list[dict[str, Any]]:
        return self._read("SELECT * FROM refunds ORDER BY created_at, id")

    def requests(self) -> list[dict[str, Any]]:
        """Every call received, with what came of it (for showing retries)."""
        return self._read("SELECT * FROM requests ORDER BY seq")

    # --- internals ---------------------------------------------------------------------

    async def _latency(self, share: float) -> None:
        low, high = self._latency_ms
        if high > 0:
            await asyncio.sleep(self._rng.uniform(low, high) * share / 1000)

    async def _run(self, tx: _Tx, key: str, p: dict[str, str]) -> tuple[dict[str, Any], bool]:
        def call() -> _Answer:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = tx(conn, key, p)
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                return result
            finally:
                conn.close()

        result = await asyncio.to_thread(call)
        if isinstance(result, _Refused):
            raise result.error
        return result

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        if not self._ready:
            _set_up(conn)
            self._ready = True
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _read(self, sql: str) -> list[dict[str, Any]]:
        conn = self._connect()
        try:
            return [dict(r) for r in conn.execute(sql)]
        finally:
            conn.close()

    @staticmethod
    def _log(conn: sqlite3.Connection, kind: str, key: str, outcome: str) -> tuple[int, int]:
        """Record a call; returns its sequence number and how many calls the key has had."""
        cursor = conn.execute(
            "INSERT INTO requests (kind, idempotency_key, outcome, at) VALUES (?, ?, ?, ?)",
            (kind, key, outcome, utcnow().isoformat()),
        )
        found = conn.execute(
            "SELECT count(*) FROM requests WHERE idempotency_key = ?", (key,)
        ).fetchone()
        return int(cursor.lastrowid or 0), int(found[0])

    @staticmethod
    def _outcome(conn: sqlite3.Connection, seq: int, outcome: str) -> None:
        conn.execute("UPDATE requests SET outcome = ? WHERE seq = ?", (outcome, seq))

    def _charge_tx(self, conn: sqlite3.Connection, key: str, p: dict[str, str]) -> _Answer:
        fingerprint = _fingerprint(**p)
        found = conn.execute("SELECT * FROM charges WHERE idempotency_key = ?", (key,)).fetchone()
        if found is not None:
            if found["fingerprint"] != fingerprint:
                self._log(conn, "charge", key, "key_reused")
                return _Refused(IdempotencyKeyReused(f"key {key} was used with other parameters"))
            self._log(conn, "charge", key, f"replayed_{found['status']}")
            return dict(found), False
        card = TEST_CARDS.get(p["token"])
        seq, calls = self._log(conn, "charge", key, "received")
        if card is not None and card.behaviour == FLAKY and calls <= self._flaky_failures:
            self._outcome(conn, seq, "unavailable")
            return _Refused(ProviderUnavailable("the processor is busy; try again"))
        decline = None
        if card is None:
            decline = "invalid_token"
        elif Decimal(p["amount"]) <= 0:
            decline = "invalid_amount"
        elif card.decline_code is not None:
            decline = card.decline_code
        row = {
            "id": new_id("ch"),
            "idempotency_key": key,
            "fingerprint": fingerprint,
            "token": p["token"],
            "amount": p["amount"],
            "currency": p["currency"],
            "reference": p["reference"],
            "ride_id": p["ride_id"],
            "status": "declined" if decline else "succeeded",
            "decline_code": decline,
            "created_at": utcnow().isoformat(),
        }
        conn.execute(
            f"INSERT INTO charges ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608 - fixed column names
            tuple(row.values()),
        )
        self._outcome(conn, seq, str(row["status"]))
        lose_answer = card is not None and card.behaviour == TIMEOUT
        return row, lose_answer

    def _refund_tx(self, conn: sqlite3.Connection, key: str, p: dict[str, str]) -> _Answer:
        fingerprint = _fingerprint(**p)
        found = conn.execute("SELECT * FROM refunds WHERE idempotency_key = ?", (key,)).fetchone()
        if found is not None:
            if found["fingerprint"] != fingerprint:
                self._log(conn, "refund", key, "key_reused")
                return _Refused(IdempotencyKeyReused(f"key {key} was used with other parameters"))
            self._log(conn, "refund", key, f"replayed_{found['status']}")
            return dict(found), False
        seq, _ = self._log(conn, "refund", key, "received")
        charge = conn.execute("SELECT * FROM charges WHERE id = ?", (p["charge_id"],)).fetchone()
        failure = None
        amount = Decimal(p["amount"])
        if charge is None or charge["status"] != "succeeded":
            failure = "charge_not_refundable"
        elif charge["currency"] != p["currency"] or amount <= 0:
            failure = "invalid_amount"
        else:
            refunded = sum(
                (
                    Decimal(r["amount"])
                    for r in conn.execute(
                        "SELECT amount FROM refunds WHERE charge_id = ? AND status = 'succeeded'",
                        (p["charge_id"],),
                    )
                ),
                Decimal(0),
            )
            if refunded + amount > Decimal(charge["amount"]):
                failure = "amount_too_large"
        row = {
            "id": new_id("re"),
            "idempotency_key": key,
            "fingerprint": fingerprint,
            "charge_id": p["charge_id"],
            "amount": p["amount"],
            "currency": p["currency"],
            "status": "failed" if failure else "succeeded",
            "failure_code": failure,
            "created_at": utcnow().isoformat(),
        }
        conn.execute(
            f"INSERT INTO refunds ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",  # noqa: S608 - fixed column names
            tuple(row.values()),
        )
        self._outcome(conn, seq, str(row["status"]))
        card = TEST_CARDS.get(charge["token"]) if charge is not None else None
        lose_answer = card is not None and card.behaviour == REFUND_TIMEOUT
        return row, lose_answer


def _set_up(conn: sqlite3.Connection, attempts: int = 100) -> None:
    """WAL mode and the schema. Connections setting up one new file at once (two processes'
    providers, or one provider's threads) can get "database is locked" at once, without
    SQLite waiting out the busy timeout (it does not wait where waiting could deadlock):
    try again after a short pause."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.01 + 0.002 * attempt)
