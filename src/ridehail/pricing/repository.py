"""Every query of the pricing domain."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.db import upsert_into
from ridehail.pricing.models import SurgeCellRow


async def all_cells(session: AsyncSession) -> list[SurgeCellRow]:
    result = await session.execute(select(SurgeCellRow).order_by(SurgeCellRow.cell))
    return list(result.scalars())


async def multipliers(session: AsyncSession) -> dict[str, str]:
    result = await session.execute(select(SurgeCellRow.cell, SurgeCellRow.multiplier))
    return {str(cell): str(multiplier) for cell, multiplier in result.all()}


async def upsert_cells(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """One statement for all the rows (executemany), not one compiled per row: a busy city
    has a couple of thousand cells, and compiling an upsert each took a second."""
    if not rows:
        return
    stmt = upsert_into(session, SurgeCellRow.__table__)
    updates = {k: stmt.excluded[k] for k in rows[0] if k != "cell"}
    await session.execute(
        stmt.on_conflict_do_update(index_elements=["cell"], set_=updates), list(rows)
    )


async def delete_cells_updated_before(session: AsyncSession, before: datetime) -> None:
    """Every cell the last save did not write (it wrote its time into each it kept)."""
    await session.execute(delete(SurgeCellRow).where(SurgeCellRow.updated_at < before))
