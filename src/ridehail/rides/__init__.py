"""Rides: requests, the trip lifecycle and its history."""

from ridehail.rides.domain import RideStatus
from ridehail.rides.models import Ride
from ridehail.rides.schemas import RideOut
from ridehail.rides.service import (
    assign_driver,
    drivers_with_active_rides,
    get_ride,
    give_up_search,
    lock_ride,
)

__all__ = [
    "Ride",
    "RideOut",
    "RideStatus",
    "assign_driver",
    "drivers_with_active_rides",
    "get_ride",
    "give_up_search",
    "lock_ride",
]
