"""The sandbox card processor keeps its promises: idempotency keys like Stripe's, never
more refunded than charged, and a record shared by every process that opens its file."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from ridehail.payments.provider import (
    ChargeResult,
    IdempotencyKeyReused,
    ProviderTimeout,
    ProviderUnavailable,
    UnknownToken,
)
from ridehail.payments.sandbox import SandboxProvider

D = Decimal


def _sandbox(tmp_path: Path, flaky_failures: int = 2) -> SandboxProvider:
    return SandboxProvider(
        tmp_path / "sandbox.db", latency_ms=(0, 1), flaky_failures=flaky_failures
    )


async def _charge(
    sb: SandboxProvider, key: str, token: str = "tok_visa", amount: str = "9.50"
) -> ChargeResult:
    return await sb.charge(
        key=key, token=token, amount=D(amount), currency="USD", reference="pay_1", ride_id="r1"
    )


async def test_a_repeated_key_replays_the_first_answer(tmp_path: Path) -> None:
    sb = _sandbox(tmp_path)
    first = await _charge(sb, "k1")
    again = await _charge(sb, "k1")
    assert first.succeeded and again == first
    declined = await _charge(sb, "k2", token="tok_chargeDeclinedInsufficientFunds")
    assert not declined.succeeded and declined.decline_code == "insufficient_funds"
    assert await _charge(sb, "k2", token="tok_chargeDeclinedInsufficientFunds") == declined
    with pytest.raises(IdempotencyKeyReused):
        await _charge(sb, "k1", amount="9.51")
    assert [c["idempotency_key"] for c in sb.charges()] == ["k1", "k2"]


async def test_concurrent_calls_with_one_key_charge_once(tmp_path: Path) -> None:
    # Two "processes": two providers on one file.
    a, b = _sandbox(tmp_path), _sandbox(tmp_path)
    results = await asyncio.gather(*(_charge(x, "same") for x in (a, b) * 10))
    assert len({r.charge_id for r in results}) == 1
    assert len(a.charges()) == 1


async def test_timeouts_flakes_and_unknown_tokens(tmp_path: Path) -> None:
    sb = _sandbox(tmp_path, flaky_failures=2)
    with pytest.raises(ProviderTimeout):
        await _charge(sb, "t", token="tok_timeout")
    assert (await _charge(sb, "t", token="tok_timeout")).succeeded  # it had happened
    for _ in range(2):
        with pytest.raises(ProviderUnavailable):
            await _charge(sb, "f", token="tok_flaky")
    assert (await _charge(sb, "f", token="tok_flaky")).succeeded
    assert [c["idempotency_key"] for c in sb.charges()] == ["t", "f"]
    with pytest.raises(UnknownToken):
        await sb.describe_card("tok_nope")
    card = await sb.describe_card("tok_mastercard")
    assert (card.brand, card.last4) == ("mastercard", "4444")


async def test_refunds_never_exceed_the_charge(tmp_path: Path) -> None:
    sb = _sandbox(tmp_path)
    charge = await _charge(sb, "c", amount="10.00")
    assert charge.charge_id is not None
    cid = charge.charge_id
    assert (await sb.refund(key="r1", charge_id=cid, amount=D("6.00"), currency="USD")).succeeded
    too_much = await sb.refund(key="r2", charge_id=cid, amount=D("4.01"), currency="USD")
    assert not too_much.succeeded and too_much.failure_code == "amount_too_large"
    assert (await sb.refund(key="r3", charge_id=cid, amount=D("4.00"), currency="USD")).succeeded
    replay = await sb.refund(key="r1", charge_id=cid, amount=D("6.00"), currency="USD")
    assert replay.succeeded
    with pytest.raises(IdempotencyKeyReused):
        await sb.refund(key="r1", charge_id=cid, amount=D("5.00"), currency="USD")
    ok = [r for r in sb.refunds() if r["status"] == "succeeded"]
    assert sum(D(r["amount"]) for r in ok) == D("10.00")
