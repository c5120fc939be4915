"""Queries over a city's worth of ids: more values than one statement can bind (32,767 on
asyncpg, 32,766 on SQLite) are asked in slices, with the same answer. The surge updater
asks this of every driver found around the cells with demand."""

from __future__ import annotations

from ridehail import drivers, rides
from ridehail.accounts import repository as accounts_repository
from ridehail.db import IN_LIST_MAX
from ridehail.dispatch import repository as dispatch_repository
from ridehail.kernel.clock import utcnow
from ridehail.kernel.ids import new_id
from ridehail.rides import repository as rides_repository
from tests.api.client import Api

MANY = 40_000


async def test_profiles_and_active_rides_of_more_ids_than_a_statement_binds(api: Api) -> None:
    assert MANY > 32_767 > IN_LIST_MAX
    available, offline = await api.driver(), await api.driver()
    await api.go_online(available, 52.52, 13.405)
    unknown = [new_id("drv") for _ in range(MANY)]
    # The real drivers in different slices: first, and past the first slice.
    ids = [available.id, *unknown[:IN_LIST_MAX], offline.id, *unknown[IN_LIST_MAX:]]
    async with api.app.state.runtime.db.read_only() as session:
        profiles = await drivers.dispatch_profiles(session, ids)
        assert set(profiles) == {available.id}
        assert await rides.drivers_with_active_rides(session, ids) == set()


async def test_dispatch_round_queries_over_more_ids_than_a_statement_binds(api: Api) -> None:
    """A batch round asks about every candidate driver of up to dispatch_batch_max_rides
    rides (no upper bound): offers held and answered, last trip ends, offered pairs, open
    offers, the searches to lock and wake, the rides and their accounts."""
    rider, driver = await api.rider(), await api.driver()
    await api.go_online(driver, 52.52, 13.405)
    ride_id = (await api.request_ride(rider, (52.5201, 13.4051), (52.53, 13.42)))["ride_id"]
    await api.wait_for_offer(driver, ride_id)
    unknown_drivers = [new_id("drv") for _ in range(MANY)]
    unknown_rides = [new_id("ride") for _ in range(MANY)]
    drivers_asked = [*unknown_drivers[:IN_LIST_MAX], driver.id, *unknown_drivers[IN_LIST_MAX:]]
    rides_asked = [*unknown_rides[: IN_LIST_MAX + 1], ride_id, *unknown_rides[IN_LIST_MAX:]]
    db = api.app.state.runtime.db
    async with db.read_only() as session:
        holding, counts = await dispatch_repository.offer_history(session, drivers_asked)
        assert holding == {driver.id} and counts == {}
        assert await dispatch_repository.last_trip_ends(session, drivers_asked) == {}
        pairs = await dispatch_repository.offered_pairs(session, rides_asked)
        assert pairs == {(ride_id, driver.id)}
        open_offers = await dispatch_repository.open_offers_for_rides(
            session, rides_asked, utcnow()
        )
        assert [o.driver_id for o in open_offers[ride_id]] == [driver.id]
        assert set(open_offers) == {ride_id}
        assert await dispatch_repository.existing_searches(session, rides_asked) == {ride_id}
        assert await dispatch_repository.active_searches(session, rides_asked) == {ride_id}
        assert set(await rides_repository.get_many(session, rides_asked)) == {ride_id}
        accounts_found = await accounts_repository.get_many(session, [*unknown_drivers, rider.id])
        assert [a.id for a in accounts_found] == [rider.id]
    async with db.transaction() as session:
        assert await dispatch_repository.lock_searches(session, rides_asked) == {ride_id}
        await dispatch_repository.wake_searches(session, rides_asked, utcnow())
        # The offer is not overdue: nothing to expire, whatever the number of rides asked.
        assert await dispatch_repository.expire_offers(session, rides_asked, utcnow()) == 0
