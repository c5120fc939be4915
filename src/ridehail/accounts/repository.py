from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.accounts.models import Account
from ridehail.db import one_of
from ridehail.kernel.errors import AlreadyExists


async def add(session: AsyncSession, account: Account) -> Account:
    session.add(account)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise AlreadyExists("an account with this email already exists") from exc
    return account


async def get(session: AsyncSession, account_id: str) -> Account | None:
    return await session.get(Account, account_id)


async def get_by_email(session: AsyncSession, email: str) -> Account | None:
    result = await session.execute(select(Account).where(Account.email == email))
    return result.scalar_one_or_none()


async def get_many(session: AsyncSession, account_ids: Collection[str]) -> list[Account]:
    found: list[Account] = []
    for among in one_of(session, Account.id, account_ids):
        found.extend((await session.execute(select(Account).where(among))).scalars())
    return found
