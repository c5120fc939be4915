"""Retention of the dispatch log: rows older than the retention are deleted by the
dispatcher, a few slices per tick; younger rows, and the log a ride's admin view shows,
are kept."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from ridehail.dispatch import repository
from ridehail.dispatch import worker as worker_module
from ridehail.dispatch.models import Candidate
from ridehail.kernel.clock import utcnow
from tests.api.conftest import AppFactory


def row(ride_id: str, considered_at: datetime, n: int) -> dict[str, Any]:
    return {
        "ride_id": ride_id,
        "round": 1,
        "strategy": "sequential",
        "driver_id": f"drv_{n}",
        "distance_m": 100.0 + n,
        "eta_s": None,
        "score": None,
        "acceptance_rate": None,
        "idle_s": None,
        "decision": "skipped",
        "reason": "test",
        "considered_at": considered_at,
    }


async def test_old_dispatch_log_rows_are_deleted_a_few_slices_per_tick(
    make_api: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_module, "PRUNE_SLICE", 3)
    monkeypatch.setattr(worker_module, "PRUNE_SLICES_PER_TICK", 2)
    async with make_api(dispatch_log_retention_days=30) as api:
        dispatcher = api.app.state.container.dispatcher
        await dispatcher.stop()  # its own ticks would prune too; called by hand below
        now = utcnow()
        runtime = api.app.state.runtime
        async with runtime.db.transaction() as session:
            # Written in time order, as dispatchers write them: 8 old rows, then 4 young.
            await repository.add_candidates(
                session,
                [row("ride_old", now - timedelta(days=40, minutes=-n), n) for n in range(8)]
                + [row("ride_new", now - timedelta(days=29, minutes=-n), n) for n in range(4)],
            )

        async def remaining() -> dict[str, int]:
            async with runtime.db.read_only() as session:
                result = await session.execute(
                    select(Candidate.ride_id, func.count()).group_by(Candidate.ride_id)
                )
                return {str(ride_id): int(count) for ride_id, count in result.all()}

        # Two slices of three at most per call: 6, then the last 2, then nothing.
        assert await dispatcher.prune_log(now=now) == 6
        assert await remaining() == {"ride_old": 2, "ride_new": 4}
        assert await dispatcher.prune_log(now=now) == 2
        assert await dispatcher.prune_log(now=now) == 0
        assert await remaining() == {"ride_new": 4}
        # A day later, the first young row has aged past the retention too.
        assert await dispatcher.prune_log(now=now + timedelta(days=1, minutes=0.5)) == 1
        assert await remaining() == {"ride_new": 3}
