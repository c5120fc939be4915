"""The surge updater: every interval, count demand and supply per H3 cell and store the
multipliers every process prices rides with (``pricing_surge_cells``).

It lives with dispatch because it needs what dispatch already combines: rides (demand:
requests in the window, by the pickup cell stored at request), live locations and driver
availability (supply: available, active drivers not on a ride whose fix is fresh). The maths
is pricing's pure :func:`~ridehail.pricing.compute_surge`.

Which cells: the "centres" are the cells with demand in the window plus the cells surging
now (so that they can fall back); each is looked at with its k=1 disk (smoothing). Supply
is the store's ``drivers_in_cells`` over the union of the disks: each fresh driver placed in
its cell, in one pass over the regions where many cells are wanted (the Redis store) or by a
search per cell. (A search per cell found each driver a couple of times and built a full
hit for each: seconds of the process's CPU per update in a 50,000-driver city with demand
everywhere, which the dispatcher sharing the process waited behind.) Several processes may
run it: each run rewrites the table from the same inputs (last writer wins), which is
harmless.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import structlog
from prometheus_client import Gauge

from ridehail import drivers, locations, pricing, rides
from ridehail.background import BackgroundLoop
from ridehail.db import Database, in_slices
from ridehail.kernel.clock import utcnow

log = structlog.get_logger("ridehail.surge")

SURGING = Gauge("ridehail_surge_cells_surging", "Cells with a surge multiplier above 1")

#: Driver ids per availability query.
_IDS_PER_QUERY = 5_000


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
        began = time.perf_counter()
        # Read and count without holding the write transaction (on SQLite the one writer
        # lock), and the store queries (a while in a busy city) without holding a
        # connection at all: requests need the pool meanwhile. Only the save writes.
        async with self._db.read_only() as session:
            demand = await rides.pickup_demand(session, now - self._window)
            current = await pricing.current_multipliers(session)
        centres = set(demand) | {c for c, m in current.items() if m > 1}
        cells = {n for c in centres for n in pricing.disk(c)}
        read = time.perf_counter()
        supply = await self._supply(cells, now - self._stale)
        counted = time.perf_counter()
        counts = {
            c: pricing.CellCounts(demand=demand.get(c, 0), supply=supply.get(c, 0)) for c in cells
        }
        computed = pricing.compute_surge(counts, current, self._policy, cells=cells)
        async with self._db.transaction() as session:
            await pricing.save_surge(session, computed, resolution=self._resolution, now=now)
        done = time.perf_counter()
        log.info(
            "surge_updated",
            centres=len(centres),
            cells=len(cells),
            read_ms=round((read - began) * 1000, 1),
            supply_ms=round((counted - read) * 1000, 1),
            save_ms=round((done - counted) * 1000, 1),
        )
        SURGING.set(sum(1 for c in computed.values() if c.multiplier > 1))
        return computed

    async def _supply(self, cells: set[str], fresh_since: datetime) -> dict[str, int]:
        """Free drivers with a fresh position, counted per cell of ``cells``. The store
        places the drivers; the database says who is free, a slice of ids at a time so that
        no one result holds the event loop for long (the dispatcher shares it)."""
        if not cells:
            return {}
        where = await self._store.drivers_in_cells(cells, fresh_since=fresh_since)
        counts: dict[str, int] = {}
        for ids in in_slices(where, _IDS_PER_QUERY):
            async with self._db.read_only() as session:
                free = await drivers.available_among(session, ids)
                free -= await rides.drivers_with_active_rides(session, free)
            for driver_id in free:
                counts[where[driver_id]] = counts.get(where[driver_id], 0) + 1
        return counts
