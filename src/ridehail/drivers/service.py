"""Driver use cases. Never commit: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, select
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.contracts import DriverWentOffline
from ridehail.db import add_event, one_of, values_among
from ridehail.drivers.models import Driver
from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import NotFound, PermissionDenied


class Availability(StrEnum):
    AVAILABLE = "available"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class VehicleSpec:
    make: str
    model: str
    plate: str
    color: str | None = None
    seats: int = 4


async def create_profile(
    session: AsyncSession, *, driver_id: str, name: str, license_number: str, vehicle: VehicleSpec
) -> Driver:
    now = utcnow()
    driver = Driver(
        id=driver_id,
        name=name.strip(),
        license_number=license_number.strip(),
        vehicle_make=vehicle.make,
        vehicle_model=vehicle.model,
        vehicle_plate=vehicle.plate,
        vehicle_color=vehicle.color,
        vehicle_seats=vehicle.seats,
        is_active=True,
        availability=Availability.OFFLINE.value,
        availability_changed_at=now,
        created_at=now,
    )
    session.add(driver)
    await session.flush()
    return driver


async def get_driver(session: AsyncSession, driver_id: str) -> Driver:
    driver = await session.get(Driver, driver_id)
    if driver is None:
        raise NotFound("driver not found")
    return driver


async def lock_driver(session: AsyncSession, driver_id: str) -> Driver:
    """Read the driver and hold the row lock to the end of the transaction, so that one
    driver's concurrent actions (accepting two rides at once) queue instead of deadlocking."""
    result = await session.execute(
        select(Driver)
        .where(Driver.id == driver_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    driver = result.scalar_one_or_none()
    if driver is None:
        raise NotFound("driver not found")
    return driver


async def set_availability(
    session: AsyncSession, *, driver_id: str, availability: Availability
) -> Driver:
    driver = await get_driver(session, driver_id)
    if availability is Availability.AVAILABLE and not driver.is_active:
        raise PermissionDenied("this driver account is deactivated")
    if driver.availability != availability.value:
        driver.availability = availability.value
        driver.availability_changed_at = utcnow()
        if availability is Availability.OFFLINE:
            add_event(session, DriverWentOffline(driver_id=driver_id))
    await session.flush()
    return driver


def _wants_offers() -> tuple[ColumnElement[bool], ...]:
    """The driver is active and available: who dispatch may offer rides to."""
    return (Driver.availability == Availability.AVAILABLE.value, Driver.is_active.is_(True))


async def available_among(session: AsyncSession, driver_ids: Collection[str]) -> set[str]:
    """The active drivers among ``driver_ids`` (any number) who want offers."""
    return await values_among(session, Driver.id, driver_ids, *_wants_offers())


@dataclass(frozen=True, slots=True)
class DispatchProfile:
    """What dispatch needs of an available driver: seats, and since when available."""

    seats: int
    available_since: datetime


async def dispatch_profiles(
    session: AsyncSession, driver_ids: Collection[str]
) -> dict[str, DispatchProfile]:
    """The active drivers among ``driver_ids`` (any number) who want offers, with their
    profiles."""
    profiles: dict[str, DispatchProfile] = {}
    for among in one_of(session, Driver.id, driver_ids):
        result = await session.execute(
            select(Driver.id, Driver.vehicle_seats, Driver.availability_changed_at).where(
                among, *_wants_offers()
            )
        )
        for driver_id, seats, since in result.all():
            profiles[driver_id] = DispatchProfile(seats=seats, available_since=since)
    return profiles
