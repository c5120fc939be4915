"""The payment provider port: what we need from a card processor, and how it can fail.

Every charge and refund carries an idempotency key: the provider does a keyed request at most
once and answers a repeat with the first answer, so retrying after a lost answer is safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True, slots=True)
class CardDetails:
    """What the provider tells us about a tokenized card (never its number)."""

    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True, slots=True)
class ChargeResult:
    """A definite answer: ``succeeded`` (the money is captured) or ``declined``."""

    succeeded: bool
    charge_id: str | None
    decline_code: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    succeeded: bool
    refund_id: str | None
    failure_code: str | None = None
    message: str | None = None


class ProviderError(Exception):
    """The call did not come to a definite answer."""


class ProviderTimeout(ProviderError):
    """No answer in time: the provider may or may not have acted (retry with the same key)."""


class ProviderUnavailable(ProviderError):
    """The provider refused to act right now (overloaded, down): nothing happened."""


class IdempotencyKeyReused(Exception):
    """The key was used before with other parameters: a bug on our side, never retried."""


class UnknownToken(Exception):
    """The provider does not know the card token."""


class PaymentProvider(Protocol):
    async def describe_card(self, token: str) -> CardDetails:
        """The card behind ``token``; raises :class:`UnknownToken`."""

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
        """Charge the card at most once per ``key``."""

    async def refund(
        self, *, key: str, charge_id: str, amount: Decimal, currency: str
    ) -> RefundResult:
        """Give back part or all of a charge, at most once per ``key``; never more in total
        than was charged."""

    async def close(self) -> None: ...
