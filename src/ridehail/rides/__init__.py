"""Rides: requests, the trip lifecycle and its history."""

from ridehail.rides.domain import DRIVER_ACTIVE, TERMINAL, RideStatus
from ridehail.rides.models import Ride
from ridehail.rides.schemas import RideOut
from ridehail.rides.service import (
    assign_driver,
    can_view,
    drivers_with_active_rides,
    get_ride,
    get_rides,
    give_up_search,
    lock_ride,
    pickup_demand,
    rides_searching_since_before,
)

__all__ = [
    "DRIVER_ACTIVE",
    "TERMINAL",
    "Ride",
    "RideOut",
    "RideStatus",
    "assign_driver",
    "can_view",
    "drivers_with_active_rides",
    "get_ride",
    "get_rides",
    "give_up_search",
    "lock_ride",
    "pickup_demand",
    "rides_searching_since_before",
]
