from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import EmailStr, Field

from ridehail.drivers.models import Driver
from ridehail.web.schemas import RequestBody, ResponseBody

Short = Annotated[str, Field(min_length=1, max_length=64)]


class VehicleIn(RequestBody):
    make: Short
    model: Short
    plate: Annotated[str, Field(min_length=1, max_length=32)]
    color: Annotated[str, Field(min_length=1, max_length=32)] | None = None
    seats: Annotated[int, Field(ge=1, le=16)] = 4


class DriverCreate(RequestBody):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    email: EmailStr
    password: Annotated[str, Field(min_length=8, max_length=256)]
    license_number: Short
    vehicle: VehicleIn
    phone: Annotated[str, Field(pattern=r"^\+?[0-9 ()-]{5,32}$")] | None = None


class VehicleOut(ResponseBody):
    make: str
    model: str
    plate: str
    color: str | None
    seats: int


class DriverOut(ResponseBody):
    driver_id: str
    name: str
    license_number: str
    vehicle: VehicleOut
    is_active: bool
    availability: str
    created_at: datetime

    @classmethod
    def of(cls, driver: Driver) -> DriverOut:
        return cls(
            driver_id=driver.id,
            name=driver.name,
            license_number=driver.license_number,
            vehicle=VehicleOut.model_validate(driver.vehicle()),
            is_active=driver.is_active,
            availability=driver.availability,
            created_at=driver.created_at,
        )


class AvailabilityIn(RequestBody):
    status: Literal["available", "offline"]


class NearbyDriverOut(ResponseBody):
    driver_id: str | None = Field(default=None, description="Only for admins")
    latitude: float
    longitude: float
    distance_m: float


class NearbyOut(ResponseBody):
    drivers: list[NearbyDriverOut]
