"""The ride state machine. Pure rules; the database enforces them again on every write."""

from __future__ import annotations

from enum import StrEnum

from ridehail.kernel.auth import Role
from ridehail.kernel.errors import Conflict


class RideStatus(StrEnum):
    SEARCHING = "searching"
    DRIVER_EN_ROUTE = "driver_en_route"
    DRIVER_ARRIVED = "driver_arrived"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_DRIVERS_AVAILABLE = "no_drivers_available"


S = RideStatus

ALLOWED: dict[RideStatus, frozenset[RideStatus]] = {
    S.SEARCHING: frozenset({S.DRIVER_EN_ROUTE, S.CANCELLED, S.NO_DRIVERS_AVAILABLE}),
    S.DRIVER_EN_ROUTE: frozenset({S.DRIVER_ARRIVED, S.CANCELLED, S.SEARCHING}),
    S.DRIVER_ARRIVED: frozenset({S.IN_PROGRESS, S.CANCELLED, S.SEARCHING}),
    S.IN_PROGRESS: frozenset({S.COMPLETED, S.CANCELLED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.NO_DRIVERS_AVAILABLE: frozenset(),
}

#: A driver is busy with a ride in one of these; at most one per driver (a unique index).
DRIVER_ACTIVE = frozenset({S.DRIVER_EN_ROUTE, S.DRIVER_ARRIVED, S.IN_PROGRESS})
#: A rider may have at most one ride in one of these.
RIDER_ACTIVE = DRIVER_ACTIVE | {S.SEARCHING}
TERMINAL = frozenset(s for s, nxt in ALLOWED.items() if not nxt)
#: Before pickup a driver's cancel hands the ride back to the search instead of ending it.
BEFORE_PICKUP = frozenset({S.DRIVER_EN_ROUTE, S.DRIVER_ARRIVED})


def can_transition(current: RideStatus, target: RideStatus) -> bool:
    return target in ALLOWED[current]


def ensure_transition(current: RideStatus, target: RideStatus) -> None:
    if not can_transition(current, target):
        raise Conflict(f"a ride that is {current.value} cannot become {target.value}")


#: The cancel reason with which a driver waiting at pickup reports that the rider did not
#: come: the ride ends (it does not search again) and the no-show fee is due.
NO_SHOW_REASON = "rider_no_show"


def status_after_cancel(current: RideStatus, by: Role, *, no_show: bool = False) -> RideStatus:
    """What a cancel by ``by`` leads to: back to searching when the driver gives up a ride
    before pickup, otherwise cancelled. A driver's no-show report (``no_show``) ends the
    ride, and is only possible while the driver waits at pickup. Raises Conflict when the
    ride can no longer be cancelled (or no rider can have failed to show)."""
    if no_show and by is Role.DRIVER:
        if current is not S.DRIVER_ARRIVED:
            raise Conflict("a no-show can only be reported while waiting at the pickup")
        return S.CANCELLED
    if by is Role.DRIVER and current in BEFORE_PICKUP:
        return S.SEARCHING
    ensure_transition(current, S.CANCELLED)
    return S.CANCELLED
