"""A rider's payment methods: cards (a provider token and what the provider says about the
card) and cash; one of them is the default a ride request uses."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import AlreadyExists, InvalidRequest, NotFound
from ridehail.kernel.ids import new_id
from ridehail.payments import repository
from ridehail.payments.domain import MethodType
from ridehail.payments.models import PaymentMethod
from ridehail.payments.provider import CardDetails


async def add_method(
    session: AsyncSession,
    *,
    rider_id: str,
    type: MethodType,
    token: str | None,
    card: CardDetails | None,
    make_default: bool,
) -> PaymentMethod:
    """Add a card (``token`` and the ``card`` the provider described) or cash. The first
    method a rider adds becomes the default; so does any added with ``make_default``."""
    existing = await repository.active_methods(session, rider_id)
    if type is MethodType.CASH and any(m.type == MethodType.CASH.value for m in existing):
        raise AlreadyExists("cash is already one of your payment methods")
    default = make_default or not existing
    if default:
        await repository.clear_default(session, rider_id)
    method = PaymentMethod(
        id=new_id("pm"),
        rider_id=rider_id,
        type=type.value,
        provider_token=token,
        brand=card.brand if card else None,
        last4=card.last4 if card else None,
        exp_month=card.exp_month if card else None,
        exp_year=card.exp_year if card else None,
        is_default=default,
        created_at=utcnow(),
    )
    session.add(method)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent add of cash, or of a default
        raise AlreadyExists("your payment methods changed meanwhile; try again") from exc
    return method


async def own_method(session: AsyncSession, *, rider_id: str, method_id: str) -> PaymentMethod:
    """The rider's active method ``method_id``; someone else's, or a removed one, is not
    found."""
    method = await repository.get_method(session, method_id)
    if method is None or method.rider_id != rider_id or method.removed_at is not None:
        raise NotFound("payment method not found")
    return method


async def list_methods(session: AsyncSession, *, rider_id: str) -> list[PaymentMethod]:
    return await repository.active_methods(session, rider_id)


async def make_default(session: AsyncSession, *, rider_id: str, method_id: str) -> PaymentMethod:
    method = await own_method(session, rider_id=rider_id, method_id=method_id)
    await repository.clear_default(session, rider_id)
    await repository.set_default(session, method.id)
    return await own_method(session, rider_id=rider_id, method_id=method_id)


async def remove(session: AsyncSession, *, rider_id: str, method_id: str) -> None:
    """Remove a method (kept for the payments that name it). If it was the default, the
    newest remaining method becomes the default."""
    method = await own_method(session, rider_id=rider_id, method_id=method_id)
    was_default = method.is_default
    await repository.remove_method(session, method.id, utcnow())
    if was_default:
        rest = [m for m in await repository.active_methods(session, rider_id) if m.id != method.id]
        if rest:
            await repository.set_default(session, rest[0].id)


async def choose_payment_method(
    session: AsyncSession, *, rider_id: str, payment_method_id: str | None
) -> str | None:
    """The method a new ride is paid with: the one asked for (it must be the rider's own,
    active: else 422), else the rider's default; None (cash) when there is none. Cash as an
    explicit method also comes back as its id."""
    if payment_method_id is not None:
        method = await repository.get_method(session, payment_method_id)
        if method is None or method.rider_id != rider_id or method.removed_at is not None:
            raise InvalidRequest(
                "payment_method_id is not one of your payment methods "
                "(see GET /api/v1/riders/me/payment-methods)"
            )
        return method.id
    for method in await repository.active_methods(session, rider_id):
        if method.is_default:
            return method.id
    return None
