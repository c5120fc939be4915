"""Every query of the pricing domain."""

from __future__ import annotations

from collections.abc import Collection, Sequence
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
    table = SurgeCellRow.__table__
    for row in rows:
        stmt = upsert_into(session, table).values(**row)
        updates = {k: stmt.excluded[k] for k in row if k != "cell"}
        await session.execute(stmt.on_conflict_do_update(index_elements=["cell"], set_=updates))


async def delete_cells_except(session: AsyncSession, keep: Collection[str]) -> None:
    stmt = delete(SurgeCellRow)
    if keep:
        stmt = stmt.where(SurgeCellRow.cell.not_in(list(keep)))
    await session.execute(stmt)
