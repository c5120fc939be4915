"""The surge updater: every interval, count demand and supply per H3 cell and store the
multipliers every process prices rides with (``pricing_surge_cells``).

It lives with dispatch because it needs what dispatch already combines: rides (demand:
requests in the window, by the pickup cell stored at request), live locations and driver
availability (supply: available, active drivers not on a ride whose fix is fresh). The maths
is pricing's pure :func:`~ridehail.pricing.compute_surge`.

Which cells: the "centres" are the cells with demand in the window plus the cells surging
now (so that they can fall back); each is looked at with its k=1 disk (smoothing). Supply is
counted by one ``nearest`` query per centre whose radius holds its whole disk, so every cell
in the union of the disks has its complete count. Several processes may run it: each run
rewrites the table from the same inputs (last writer wins), which is harmless.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog
from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail import drivers, locations, pricing, rides
from ridehail.background import BackgroundLoop
from ridehail.db import Database
from ridehail.kernel.clock import utcnow

log = structlog.get_logger("ridehail.surge")

SURGING = Gauge("ridehail_surge_cells_surging", "Cells with a surge multiplier above 1")

#: Drivers asked of the store around one centre (a k=1 disk is a few km²).
SUPPLY_LIMIT_PER_CENTRE = 2_000
#: Store queries in flight at once.
_CONCURRENT_QUERIES = 32


class SurgeUpdater(BackgroundLoop):
    name = "surge-updater"

    def __init__(
        self,
        *,
        db: Database,
        store: locations.DriverLocationStore,
        policy: pricing.SurgePolicy,
        resolution: int,
        window_s: float,
        stale_after_s: float,
        interval_s: float,
    ) -> None:
        super().__init__(interval_s=interval_s)
        self._db = db
        self._store = store
        self._policy = policy
        self._resolution = resolution
        self._window = timedelta(seconds=window_s)
        self._stale = timedelta(seconds=stale_after_s)

    async def step(self) -> None:
        await self.update()

    async def update(self, now: datetime | None = None) -> dict[str, pricing.SurgeCell]:
        """One recomputation; returns the cells computed."""
        now = now or utcnow()
        # Read and count without holding the write transaction (on SQLite the one writer
        # lock): the store queries can take a while in a busy city. Only the save writes.
        async with self._db.read_only() as session:
            demand = await rides.pickup_demand(session, now - self._window)
            current = await pricing.current_multipliers(session)
            centres = set(demand) | {c for c, m in current.items() if m > 1}
            cells = {n for c in centres for n in pricing.disk(c)}
            supply = await self._supply(session, centres, cells, now - self._stale)
        counts = {
            c: pricing.CellCounts(demand=demand.get(c, 0), supply=supply.get(c, 0)) for c in cells
        }
        computed = pricing.compute_surge(counts, current, self._policy, cells=cells)
        async with self._db.transaction() as session:
            await pricing.save_surge(session, computed, resolution=self._resolution, now=now)
        SURGING.set(sum(1 for c in computed.values() if c.multiplier > 1))
        return computed

    async def _supply(
        self, session: AsyncSession, centres: set[str], cells: set[str], fresh_since: datetime
    ) -> dict[str, int]:
        """Free drivers with a fresh position, counted per cell of ``cells``."""
        if not centres:
            return {}
        reach = pricing.disk_reach_m(self._resolution)
        gate = asyncio.Semaphore(_CONCURRENT_QUERIES)

        async def around(centre: str) -> list[locations.NearbyDriver]:
            lat, lon = pricing.centre_of(centre)
            async with gate:
                return await self._store.nearest(
                    latitude=lat,
                    longitude=lon,
                    radius_m=reach,
                    limit=SUPPLY_LIMIT_PER_CENTRE,
                    fresh_since=fresh_since,
                )

        found = await asyncio.gather(*(around(c) for c in sorted(centres)))
        where: dict[str, str] = {}
        for hits in found:
            for hit in hits:
                cell = pricing.cell_of(hit.latitude, hit.longitude, self._resolution)
                if cell in cells:
                    where[hit.driver_id] = cell
        if not where:
            return {}
        free = set(await drivers.dispatch_profiles(session, where.keys()))
        free -= await rides.drivers_with_active_rides(session, free)
        counts: dict[str, int] = {}
        for driver_id in free:
            counts[where[driver_id]] = counts.get(where[driver_id], 0) + 1
        return counts
