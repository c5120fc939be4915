"""Drivers: profiles, vehicles, availability."""

from ridehail.drivers.models import Driver
from ridehail.drivers.service import (
    Availability,
    VehicleSpec,
    available_driver_ids,
    create_profile,
    get_driver,
    lock_driver,
    set_availability,
)

__all__ = [
    "Availability",
    "Driver",
    "VehicleSpec",
    "available_driver_ids",
    "create_profile",
    "get_driver",
    "lock_driver",
    "set_availability",
]
