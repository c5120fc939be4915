from __future__ import annotations

import itertools

import pytest

from ridehail.kernel.auth import Role
from ridehail.kernel.errors import Conflict
from ridehail.rides.domain import (
    ALLOWED,
    DRIVER_ACTIVE,
    TERMINAL,
    RideStatus,
    can_transition,
    ensure_transition,
    status_after_cancel,
)

S = RideStatus

EXPECTED_ALLOWED = {
    (S.SEARCHING, S.DRIVER_EN_ROUTE),
    (S.SEARCHING, S.CANCELLED),
    (S.SEARCHING, S.NO_DRIVERS_AVAILABLE),
    (S.DRIVER_EN_ROUTE, S.DRIVER_ARRIVED),
    (S.DRIVER_EN_ROUTE, S.CANCELLED),
    (S.DRIVER_EN_ROUTE, S.SEARCHING),
    (S.DRIVER_ARRIVED, S.IN_PROGRESS),
    (S.DRIVER_ARRIVED, S.CANCELLED),
    (S.DRIVER_ARRIVED, S.SEARCHING),
    (S.IN_PROGRESS, S.COMPLETED),
    (S.IN_PROGRESS, S.CANCELLED),
}


@pytest.mark.parametrize(("current", "target"), list(itertools.product(S, S)))
def test_every_pair_of_statuses(current: RideStatus, target: RideStatus) -> None:
    allowed = (current, target) in EXPECTED_ALLOWED
    assert can_transition(current, target) is allowed
    if allowed:
        ensure_transition(current, target)
    else:
        with pytest.raises(Conflict):
            ensure_transition(current, target)


def test_terminal_statuses_lead_nowhere() -> None:
    assert {S.COMPLETED, S.CANCELLED, S.NO_DRIVERS_AVAILABLE} == TERMINAL
    assert all(not ALLOWED[s] for s in TERMINAL)


def test_driver_active_statuses() -> None:
    assert {S.DRIVER_EN_ROUTE, S.DRIVER_ARRIVED, S.IN_PROGRESS} == DRIVER_ACTIVE


@pytest.mark.parametrize("current", [S.DRIVER_EN_ROUTE, S.DRIVER_ARRIVED])
def test_driver_cancel_before_pickup_returns_ride_to_search(current: RideStatus) -> None:
    assert status_after_cancel(current, Role.DRIVER) is S.SEARCHING
    assert status_after_cancel(current, Role.RIDER) is S.CANCELLED


@pytest.mark.parametrize("role", list(Role))
def test_cancel_during_trip_ends_it(role: Role) -> None:
    assert status_after_cancel(S.IN_PROGRESS, role) is S.CANCELLED


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("current", sorted(TERMINAL))
def test_cancel_after_the_end_is_a_conflict(role: Role, current: RideStatus) -> None:
    with pytest.raises(Conflict):
        status_after_cancel(current, role)


def test_a_no_show_report_at_the_pickup_ends_the_ride() -> None:
    assert status_after_cancel(S.DRIVER_ARRIVED, Role.DRIVER, no_show=True) is S.CANCELLED


@pytest.mark.parametrize("current", [s for s in RideStatus if s is not S.DRIVER_ARRIVED])
def test_a_no_show_report_anywhere_else_is_a_conflict(current: RideStatus) -> None:
    with pytest.raises(Conflict):
        status_after_cancel(current, Role.DRIVER, no_show=True)
