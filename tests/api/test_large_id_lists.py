"""Queries over a city's worth of ids: more values than one statement can bind (32,767 on
asyncpg, 32,766 on SQLite) are asked in slices, with the same answer. The surge updater
asks this of every driver found around the cells with demand."""

from __future__ import annotations

from ridehail import drivers, rides
from ridehail.db import IN_LIST_MAX
from ridehail.kernel.ids import new_id
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
