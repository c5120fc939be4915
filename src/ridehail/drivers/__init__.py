"""Drivers: profiles, vehicles, availability."""

from ridehail.drivers.models import Driver
from ridehail.drivers.service import (
    Availability,
    DispatchProfile,
    VehicleSpec,
    available_among,
    create_profile,
    dispatch_profiles,
    get_driver,
    lock_driver,
    set_availability,
)

__all__ = [
    "Availability",
    "DispatchProfile",
    "Driver",
    "VehicleSpec",
    "available_among",
    "create_profile",
    "dispatch_profiles",
    "get_driver",
    "lock_driver",
    "set_availability",
]
