"""Concurrent single-fix writes gathered into one batched store write.

Each location report is one small write, and with a network store most of its cost is the
client's per-command overhead and the round trip, not the work in Redis. Under load, many
reports are in flight in the same process at once: :class:`CoalescingStore` lets every
``record`` that arrives while the event loop is busy join one ``record_many`` call, issued
at the next turn of the loop. Alone, a report is written at once (a batch of one, no timer,
no added latency); under load, as many share one round trip as arrived during the last.

The in-process store of the embedded default is batched too, for the answers rather than
the writes. Handled one by one, each report is answered as soon as it is handled, and that
socket write was 36 % of the embedded server's samples under wrk (py-spy); answered
together, the reports of one turn go out in one burst, and the server's CPU per report fell
from 136 to 113 µs (32 connections, three rounds each, 2026-11-30, the machine of
docs/benchmarks.md). Our reading: a write to a client that went idle meanwhile wakes it,
which is dear on that 2-vCPU VM, and a burst finds it awake.

A store that can put a batch on the wire without waiting (:class:`Submits`: the Redis
store over its own connection) gets each turn's batch at once, with a few batches in
flight together, answered in the order sent. A store that cannot gets one ``record_many``
at a time, and the reports that arrive meanwhile wait for the next. Keeping a few batches
in flight matters under load: with one, the process sits idle while Redis runs a batch,
and every report waits for the batch ahead of it as well as its own.

``record_many`` is defined as the same as ``record`` for each fix in order, so batching
changes no outcome: each caller gets the outcome of its own fix, and an error in the batch
reaches every caller in it. Calls whose effect depends on order with the writes (``forget``,
the trace calls, ``current``) first wait for the writes already accepted, so a driver who
reports and then goes offline is not put back into search by a batch that was still queued.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from functools import partial
from typing import Protocol, runtime_checkable

from ridehail.locations.ports import DriverLocationStore, LocationFix, NearbyDriver, Recorded

#: A batch never grows past this; the rest waits for the next turn.
MAX_BATCH = 500  # the Redis store's CHUNK: one script call
#: Batches on the wire at once (stores that submit without waiting only).
MAX_IN_FLIGHT = 2

_Batch = list[tuple[LocationFix, "asyncio.Future[Recorded]"]]


@runtime_checkable
class Submits(Protocol):
    def submit_many(
        self, fixes: Sequence[LocationFix], done: Callable[[list[Recorded] | Exception], None]
    ) -> bool:
        """Send a batch before returning, so that batches submitted one after another are
        applied in that order; ``done`` is told ``record_many``'s outcomes or the error.
        False, having sent nothing, when the store cannot send without waiting just now
        (the caller then uses ``record_many``)."""
        ...


class CoalescingStore:
    """A :class:`DriverLocationStore` whose ``record`` calls are batched; every other call
    goes straight to ``inner``."""

    def __init__(
        self,
        inner: DriverLocationStore,
        *,
        max_batch: int = MAX_BATCH,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.inner = inner
        self.announces_positions = inner.announces_positions
        self._max_batch = max_batch
        self._submits = inner if isinstance(inner, Submits) else None
        self._max_in_flight = max_in_flight
        self._pending: _Batch = []
        # Writes are applied in the order accepted, so two counters say what is settled:
        # a call that must follow the writes accepted so far waits for ``_applied`` to
        # reach ``_accepted`` as it was (no bookkeeping per write beyond one increment).
        self._accepted = 0
        self._applied = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._scheduled = False  # a turn's flush is queued
        self._flushing = False  # a record_many flush (task) is running
        self._in_flight = 0  # submitted batches not yet answered
        self._tasks: set[asyncio.Task[None]] = set()

    def record(self, fix: LocationFix) -> asyncio.Future[Recorded]:
        """The fix's outcome, settled when its batch has been written. A plain function
        returning the future: a report in flight then suspends one frame less deep (this
        is the path of every location PUT)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Recorded] = loop.create_future()
        self._pending.append((fix, future))
        self._accepted += 1
        if not self._scheduled:
            self._scheduled = True
            # call_soon runs after every callback already queued in this turn of the loop:
            # the reports that arrived together are all pending by then.
            loop.call_soon(self._turn)
        return future

    def _turn(self) -> None:
        self._scheduled = False
        if not self._flushing:  # a running flush takes what is pending itself
            self._submit_pending()

    def _take(self) -> _Batch:
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        return batch

    def _submit_pending(self) -> None:
        """Put pending batches on the wire while slots are free, or start a flush."""
        while self._pending and self._in_flight < self._max_in_flight:
            batch = self._take()
            if self._submits is None or not self._submits.submit_many(
                [fix for fix, _ in batch], partial(self._answered, batch)
            ):
                self._pending[:0] = batch
                self._flushing = True
                task = asyncio.get_running_loop().create_task(self._flush())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            self._in_flight += 1

    def _answered(self, batch: _Batch, outcomes: list[Recorded] | Exception) -> None:
        self._in_flight -= 1
        _settle(batch, outcomes)
        self._applied += len(batch)
        self._wake_settled()
        if self._pending and not self._flushing and not self._scheduled:
            self._submit_pending()  # what waited for a free slot

    async def _flush(self) -> None:
        """One batch through ``record_many``; then the next batch goes whichever way it
        can (submitted, once the store can again, or another flush)."""
        batch = self._take()
        try:
            _settle(batch, await self.inner.record_many([fix for fix, _ in batch]))
        except Exception as exc:  # every caller in the batch sees the failure
            _settle(batch, exc)
        finally:
            self._applied += len(batch)
            self._wake_settled()
            self._flushing = False
        if self._pending and not self._scheduled:
            self._submit_pending()

    def _wake_settled(self) -> None:
        if not self._waiters:
            return
        still = []
        for target, waiter in self._waiters:
            if target <= self._applied:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still.append((target, waiter))
        self._waiters = still

    async def _settled(self) -> None:
        """Wait until every write accepted so far has been applied (or has failed)."""
        target = self._accepted
        if self._applied >= target:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        await waiter

    async def record_many(self, fixes: Sequence[LocationFix]) -> list[Recorded]:
        await self._settled()
        return await self.inner.record_many(fixes)

    async def trace_only(self, fix: LocationFix) -> None:
        await self._settled()
        await self.inner.trace_only(fix)

    async def current(self, driver_id: str) -> LocationFix | None:
        await self._settled()
        return await self.inner.current(driver_id)

    async def nearest(
        self,
        *,
        latitude: float,
        longitude: float,
        radius_m: float,
        limit: int,
        fresh_since: datetime,
    ) -> list[NearbyDriver]:
        return await self.inner.nearest(
            latitude=latitude,
            longitude=longitude,
            radius_m=radius_m,
            limit=limit,
            fresh_since=fresh_since,
        )

    async def drivers_in_cells(
        self, cells: Collection[str], *, fresh_since: datetime
    ) -> dict[str, str]:
        return await self.inner.drivers_in_cells(cells, fresh_since=fresh_since)

    async def forget(self, driver_id: str) -> None:
        await self._settled()
        await self.inner.forget(driver_id)

    async def begin_trace(self, driver_id: str) -> None:
        await self._settled()
        await self.inner.begin_trace(driver_id)

    async def end_trace(self, driver_id: str) -> list[LocationFix]:
        await self._settled()
        return await self.inner.end_trace(driver_id)

    async def ping(self) -> None:
        await self.inner.ping()

    async def follow(self, driver_id: str, *, for_s: float) -> None:
        await self.inner.follow(driver_id, for_s=for_s)

    async def close(self) -> None:
        await self.inner.close()


def _settle(batch: _Batch, outcomes: list[Recorded] | BaseException) -> None:
    """Each caller its own outcome, or every caller the error."""
    if isinstance(outcomes, BaseException):
        for _, future in batch:
            if not future.done():
                future.set_exception(outcomes)
        return
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if not future.done():  # the caller may have been cancelled meanwhile
            future.set_result(outcome)
