from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Query, Response, status

from ridehail.kernel.auth import Role
from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import InvalidRequest, NotFound
from ridehail.payments import ledger, methods, processing, service
from ridehail.payments.config import policy_from_settings, provider_of
from ridehail.payments.domain import ZERO, MethodType, PaymentStatus
from ridehail.payments.provider import CardDetails, UnknownToken
from ridehail.payments.schemas import (
    CardMethodCreate,
    DriverPayoutOut,
    EarningLineOut,
    EarningsOut,
    EarningsTotals,
    PaymentMethodCreate,
    PaymentMethodList,
    PaymentMethodOut,
    PaymentOut,
    PaymentPage,
    PaymentRetry,
    PayoutDayOut,
    PayoutsOut,
    RefundCreate,
    RefundOut,
    money,
)
from ridehail.web.deps import PrincipalDep, ReadSession, RuntimeDep, require_role
from ridehail.web.paging import PageSize, PageToken, decode_page_token, encode_page_token

router = APIRouter(prefix="/api/v1", tags=["payments"])

#: The longest window the earnings and payout reports cover in one request.
MAX_WINDOW = timedelta(days=366)


# --- payment methods -----------------------------------------------------------------------


@router.post(
    "/riders/me/payment-methods",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentMethodOut,
)
async def add_payment_method(
    body: Annotated[PaymentMethodCreate, Body()], principal: PrincipalDep, runtime: RuntimeDep
) -> PaymentMethodOut:
    """Add a card (the token the provider's tokenization gave the app: never a card number)
    or cash. The first method, or one sent with `make_default`, becomes the default that
    ride requests use. An unknown token is 422; cash twice is 409."""
    require_role(principal, Role.RIDER)
    card: CardDetails | None = None
    token: str | None = None
    if isinstance(body, CardMethodCreate):
        token = body.token
        try:
            card = await provider_of(runtime).describe_card(token)
        except UnknownToken as exc:
            raise InvalidRequest("the payment provider does not know this card token") from exc
    async with runtime.db.transaction() as session:
        method = await methods.add_method(
            session,
            rider_id=principal.subject_id,
            type=MethodType(body.type),
            token=token,
            card=card,
            make_default=body.make_default,
        )
    return PaymentMethodOut.of(method)


@router.get("/riders/me/payment-methods", response_model=PaymentMethodList)
async def list_payment_methods(principal: PrincipalDep, session: ReadSession) -> PaymentMethodList:
    require_role(principal, Role.RIDER)
    found = await methods.list_methods(session, rider_id=principal.subject_id)
    return PaymentMethodList(payment_methods=[PaymentMethodOut.of(m) for m in found])


@router.delete("/riders/me/payment-methods/{method_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_payment_method(
    method_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> Response:
    """Remove a method. Rides already requested with it are still charged to it; if it was
    the default, the newest remaining method becomes the default."""
    require_role(principal, Role.RIDER)
    async with runtime.db.transaction() as session:
        await methods.remove(session, rider_id=principal.subject_id, method_id=method_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/riders/me/payment-methods/{method_id}:make-default", response_model=PaymentMethodOut)
async def make_default(
    method_id: str, principal: PrincipalDep, runtime: RuntimeDep
) -> PaymentMethodOut:
    require_role(principal, Role.RIDER)
    async with runtime.db.transaction() as session:
        method = await methods.make_default(
            session, rider_id=principal.subject_id, method_id=method_id
        )
    return PaymentMethodOut.of(method)


# --- payments ------------------------------------------------------------------------------


@router.get("/payments", response_model=PaymentPage)
async def list_payments(
    *,
    principal: PrincipalDep,
    session: ReadSession,
    status_filter: Annotated[PaymentStatus | None, Query(alias="status")] = None,
    ride_id: Annotated[str | None, Query(max_length=40)] = None,
    page_size: PageSize = 20,
    page_token: PageToken = None,
) -> PaymentPage:
    """Admin: every payment (e.g. `?status=failed`); rider: their own. Newest first."""
    require_role(principal, Role.ADMIN, Role.RIDER)
    rider_id = None if principal.is_admin else principal.subject_id
    found = await service.list_payments(
        session,
        status=status_filter,
        rider_id=rider_id,
        ride_id=ride_id,
        before_id=decode_page_token(page_token, "pay_"),
        limit=page_size + 1,
    )
    more = len(found) > page_size
    found = found[:page_size]
    refunds = await service.refunds_of(session, [p.id for p in found])
    return PaymentPage(
        payments=[PaymentOut.of(p, refunds.get(p.id, [])) for p in found],
        next_page_token=encode_page_token(found[-1].id) if more and found else None,
    )


@router.get("/payments/{payment_id}", response_model=PaymentOut)
async def get_payment(payment_id: str, principal: PrincipalDep, session: ReadSession) -> PaymentOut:
    """Admin, or the payment's rider (anyone else: 404)."""
    payment = await service.get_payment(session, payment_id)
    if not principal.is_admin and payment.rider_id != principal.subject_id:
        raise NotFound("payment not found")
    refunds = await service.refunds_of(session, [payment.id])
    return PaymentOut.of(payment, refunds.get(payment.id, []))


@router.post("/payments/{payment_id}:retry", response_model=PaymentOut)
async def retry_payment(
    payment_id: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    body: PaymentRetry | None = None,
) -> PaymentOut:
    """Admin: charge a failed payment again (409 unless it is failed). After a decline the
    rider's current default card is charged (or the card named), under a new idempotency
    key; after retries ran out on timeouts, the same card and key, so a charge that did
    happen is found rather than made twice. The payments worker makes the attempt."""
    require_role(principal, Role.ADMIN)
    async with runtime.db.transaction() as session:
        payment = await service.retry_payment(
            session,
            payment_id=payment_id,
            payment_method_id=body.payment_method_id if body else None,
            now=utcnow(),
        )
        refunds = await service.refunds_of(session, [payment.id])
    return PaymentOut.of(payment, refunds.get(payment.id, []))


@router.post("/payments/{payment_id}:refund", response_model=RefundOut)
async def refund_payment(
    payment_id: str,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    body: RefundCreate | None = None,
) -> RefundOut:
    """Admin: give money back to the rider's card: `amount` (default: all that is left),
    never more than was captured less earlier refunds (422). The answer's status is
    `succeeded`, `failed`, or `pending` when the provider's answer was lost: the payments
    worker then asks again with the same key until it knows."""
    require_role(principal, Role.ADMIN)
    policy = policy_from_settings(runtime.settings)
    amount = Decimal(body.amount) if body and body.amount is not None else None
    async with runtime.db.transaction() as session:
        claim = await service.start_refund(
            session,
            payment_id=payment_id,
            amount=amount,
            reason=body.reason if body else None,
            requested_by=principal.subject_id,
            now=utcnow(),
            policy=policy,
        )
    await processing.refund(runtime.db, provider_of(runtime), claim, policy)
    async with runtime.db.read_only() as session:
        return RefundOut.of(await service.get_refund(session, claim.refund_id))


# --- earnings and payouts ------------------------------------------------------------------


def _instant(value: str, zone: ZoneInfo, *, end: bool, name: str) -> datetime:
    """An ISO date (a whole day in ``zone``: ``to`` includes it) or date-time (naive is
    read in ``zone``)."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day + timedelta(days=1 if end else 0), time(), zone)
            return start.astimezone(UTC)
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidRequest(f"{name} must be an ISO date or date-time") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(UTC)


def _window(
    from_: str | None, to: str | None, zone: ZoneInfo, *, default_days: int
) -> tuple[datetime, datetime]:
    end = _instant(to, zone, end=True, name="to") if to else utcnow()
    if from_:
        start = _instant(from_, zone, end=False, name="from")
    else:
        today = end.astimezone(zone).date()
        start = datetime.combine(today - timedelta(days=default_days - 1), time(), zone)
        start = start.astimezone(UTC)
    if start >= end:
        raise InvalidRequest("from must be before to")
    if end - start > MAX_WINDOW:
        raise InvalidRequest("the window may cover at most 366 days")
    return start, end


_WINDOW_HELP = "ISO date (a day in the city's time zone) or date-time"
FromParam = Annotated[str | None, Query(alias="from", max_length=40, description=_WINDOW_HELP)]
ToParam = Annotated[str | None, Query(max_length=40, description=_WINDOW_HELP)]


@router.get("/drivers/me/earnings", response_model=EarningsOut)
async def my_earnings(
    principal: PrincipalDep,
    session: ReadSession,
    runtime: RuntimeDep,
    from_: FromParam = None,
    to: ToParam = None,
) -> EarningsOut:
    """The caller's (a driver's) earnings from captured payments posted in the window
    (default: the last 7 days): per ride gross (fare less booking fee), commission, net,
    and cash they collected themselves; `to` as a date includes that day."""
    require_role(principal, Role.DRIVER)
    zone = ZoneInfo(runtime.settings.city_timezone)
    start, end = _window(from_, to, zone, default_days=7)
    lines = await ledger.driver_earnings(
        session, driver_id=principal.subject_id, start=start, end=end
    )
    currency = runtime.settings.currency

    def total(values: list[Decimal]) -> str:
        return f"{sum(values, ZERO):.2f}"

    mine = [line for line in lines if line.currency == currency]
    gross = total([line.gross for line in mine])
    commission = total([line.commission for line in mine])
    net = total([line.net for line in mine])
    cash = total([line.cash_collected for line in mine])
    totals = EarningsTotals(
        gross=money(Decimal(gross), currency),
        commission=money(Decimal(commission), currency),
        net=money(Decimal(net), currency),
        cash_collected=money(Decimal(cash), currency),
        payable=money(Decimal(net) - Decimal(cash), currency),
    )
    return EarningsOut(
        driver_id=principal.subject_id,
        from_=start,
        to=end,
        lines=[EarningLineOut.of(line) for line in lines],
        totals=totals,
    )


@router.get("/payouts/daily", response_model=PayoutsOut)
async def daily_payouts(
    principal: PrincipalDep,
    session: ReadSession,
    runtime: RuntimeDep,
    from_: FromParam = None,
    to: ToParam = None,
) -> PayoutsOut:
    """Admin: per day (in the city's time zone) and driver, the net the platform owes the
    driver from that day's ledger (earnings on card fares less the platform's share of the
    cash fares they collected; negative: the driver owes). Default: the last 7 days."""
    require_role(principal, Role.ADMIN)
    zone = ZoneInfo(runtime.settings.city_timezone)
    start, end = _window(from_, to, zone, default_days=7)
    items = await ledger.daily_payables(session, start=start, end=end, zone=zone)
    days: dict[date, list[DriverPayoutOut]] = {}
    for item in items:
        days.setdefault(item.day, []).append(DriverPayoutOut.of(item))
    return PayoutsOut(
        from_=start,
        to=end,
        timezone=runtime.settings.city_timezone,
        days=[PayoutDayOut(date=day, drivers=drivers) for day, drivers in sorted(days.items())],
    )
