"""Drivers placed in H3 cells by searching around each cell: the way any store can answer
:meth:`~ridehail.locations.ports.DriverLocationStore.drivers_in_cells`, and the right one
when the cells are few (a store that can do better over many cells does, see
:mod:`ridehail.locations.redis_store`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime

import h3

from ridehail.kernel.geo import cell_reach_m
from ridehail.locations.ports import NearbyDriver

#: Drivers asked of the store around one cell (under a km² at resolution 8).
LIMIT_PER_CELL = 2_000
#: Searches in flight at once: few, so that dispatch's own searches (same process, same
#: store) never queue behind a long line of these.
CONCURRENT_SEARCHES = 4

Nearest = Callable[..., Awaitable[list[NearbyDriver]]]


def resolution_of(cells: Collection[str]) -> int:
    """The one resolution of ``cells``; ValueError if they are not valid cells of one."""
    found = {h3.get_resolution(cell) for cell in cells if h3.is_valid_cell(cell)}
    if len(found) != 1 or not all(h3.is_valid_cell(cell) for cell in cells):
        raise ValueError("cells must be valid H3 cells of one resolution")
    return int(found.pop())


async def drivers_in_cells_by_search(
    nearest: Nearest, cells: Collection[str], *, fresh_since: datetime
) -> dict[str, str]:
    """One ``nearest`` search per cell, its radius just holding the cell; each driver found
    is placed (an H3 lookup) once, however many circles found it."""
    if not cells:
        return {}
    resolution = resolution_of(cells)
    wanted = set(cells)
    gate = asyncio.Semaphore(CONCURRENT_SEARCHES)
    where: dict[str, str] = {}
    placed: set[str] = set()

    async def around(cell: str) -> None:
        lat, lon = h3.cell_to_latlng(cell)
        async with gate:
            hits = await nearest(
                latitude=lat,
                longitude=lon,
                radius_m=cell_reach_m(cell),
                limit=LIMIT_PER_CELL,
                fresh_since=fresh_since,
            )
        for hit in hits:
            if hit.driver_id in placed:
                continue
            placed.add(hit.driver_id)
            found = h3.latlng_to_cell(hit.latitude, hit.longitude, resolution)
            if found in wanted:
                where[hit.driver_id] = found

    await asyncio.gather(*(around(cell) for cell in sorted(wanted)))
    return where
