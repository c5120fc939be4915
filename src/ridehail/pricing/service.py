"""Pricing use cases: the policy from settings, the surge in force, storing new surge.
Never commits: the caller owns the transaction."""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.kernel.errors import InvalidRequest
from ridehail.pricing import repository
from ridehail.pricing.domain import STANDARD, FarePolicy, format_multiplier
from ridehail.pricing.models import SurgeCellRow
from ridehail.pricing.surge import ONE, SurgeCell, SurgePolicy, cell_of, centre_of
from ridehail.settings import Settings


def policy_from_settings(settings: Settings, product: str = STANDARD) -> FarePolicy:
    """The fare policy of ``product``: the fare_* settings, with the product's own prices
    (``fare_products``) in their place. Unknown products are 422 (:class:`InvalidRequest`)."""
    standard = FarePolicy(
        base=Decimal(settings.fare_base),
        per_km=Decimal(settings.fare_per_km),
        per_minute=Decimal(settings.fare_per_minute),
        minimum=Decimal(settings.fare_minimum),
        booking_fee=Decimal(settings.fare_booking_fee),
        currency=settings.currency,
        detour_factor=settings.fare_detour_factor,
        assumed_speed_kmh=settings.fare_assumed_speed_kmh,
        waiting_free_s=settings.fare_waiting_free_s,
        waiting_per_minute=settings.fare_waiting_per_minute,
        cancellation_grace_s=settings.fare_cancellation_grace_s,
        cancellation_fee=settings.fare_cancellation_fee,
        no_show_wait_s=settings.fare_no_show_wait_s,
        no_show_fee=settings.fare_no_show_fee,
    )
    if product == STANDARD:
        return standard
    prices = settings.fare_products.get(product)
    if prices is None:
        known = ", ".join([STANDARD, *sorted(settings.fare_products)])
        raise InvalidRequest(f"unknown product {product!r}; products: {known}")

    def price(key: str, default: Decimal) -> Decimal:
        return Decimal(prices[key]) if key in prices else default

    return replace(
        standard,
        product=product,
        base=price("base", standard.base),
        per_km=price("per_km", standard.per_km),
        per_minute=price("per_minute", standard.per_minute),
        minimum=price("minimum", standard.minimum),
        booking_fee=price("booking_fee", standard.booking_fee),
        waiting_per_minute=price("waiting_per_minute", standard.waiting_per_minute),
        cancellation_fee=price("cancellation_fee", standard.cancellation_fee),
        no_show_fee=price("no_show_fee", standard.no_show_fee),
    )


def products(settings: Settings) -> list[str]:
    return [STANDARD, *sorted(settings.fare_products)]


def surge_policy_from_settings(settings: Settings) -> SurgePolicy:
    return SurgePolicy(
        cap=settings.surge_cap,
        step=settings.surge_step,
        hysteresis=settings.surge_hysteresis,
        sensitivity=settings.surge_sensitivity,
        threshold=settings.surge_threshold,
        neighbour_weight=settings.surge_neighbour_weight,
    )


def parse_multiplier(text: str | None) -> Decimal:
    """A stored multiplier; anything missing or unreadable counts as no surge."""
    if not text:
        return ONE
    try:
        value = Decimal(text)
    except InvalidOperation:
        return ONE
    return value if value.is_finite() and value >= ONE else ONE


@dataclass(frozen=True, slots=True)
class SurgeQuote:
    """The surge at a pickup point now: its cell and the multiplier in force there."""

    cell: str
    multiplier: Decimal


class SurgeBoard:
    """This process's view of the multipliers in force, read from the database at most once
    per ``ttl_s`` (0: on every call). Every process sees the same table; only their caches
    differ, by at most ``ttl_s``."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_s = ttl_s
        self._snapshot: dict[str, str] = {}
        self._read_at: float | None = None

    async def multipliers(self, session: AsyncSession) -> Mapping[str, str]:
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= self._ttl_s:
            self._snapshot = await repository.multipliers(session)
            self._read_at = now
        return self._snapshot

    async def quote(
        self, session: AsyncSession, *, latitude: float, longitude: float, resolution: int
    ) -> SurgeQuote:
        cell = cell_of(latitude, longitude, resolution)
        found = (await self.multipliers(session)).get(cell)
        return SurgeQuote(cell=cell, multiplier=parse_multiplier(found))


_BOARD_KEY = "pricing.surge_board"


def surge_board(extras: MutableMapping[str, Any], settings: Settings) -> SurgeBoard:
    """The process's board, kept in the runtime's ``extras`` (made on first use)."""
    board = extras.get(_BOARD_KEY)
    if not isinstance(board, SurgeBoard):
        board = extras[_BOARD_KEY] = SurgeBoard(settings.surge_cache_s)
    return board


async def surge_cells(session: AsyncSession) -> list[SurgeCellRow]:
    return await repository.all_cells(session)


async def current_multipliers(session: AsyncSession) -> dict[str, Decimal]:
    """Every stored cell's multiplier, straight from the database (no cache)."""
    return {c: parse_multiplier(m) for c, m in (await repository.multipliers(session)).items()}


async def save_surge(
    session: AsyncSession,
    cells: Mapping[str, SurgeCell],
    *,
    resolution: int,
    now: datetime,
) -> None:
    """Make ``cells`` the table: cells with demand, supply or surge are upserted, every
    other row is removed (the table holds only what is going on)."""
    rows: list[dict[str, Any]] = []
    for cell in cells.values():
        if cell.demand == 0 and cell.supply == 0 and cell.multiplier <= ONE:
            continue
        lat, lon = centre_of(cell.cell)
        rows.append(
            {
                "cell": cell.cell,
                "resolution": resolution,
                "multiplier": format_multiplier(cell.multiplier),
                "demand": cell.demand,
                "supply": cell.supply,
                "latitude": lat,
                "longitude": lon,
                "updated_at": now,
            }
        )
    await repository.upsert_cells(session, rows)
    await repository.delete_cells_updated_before(session, now)
