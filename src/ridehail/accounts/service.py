"""Account use cases. They never commit: the caller owns the transaction."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.accounts import repository
from ridehail.accounts.models import Account
from ridehail.accounts.security import Passwords
from ridehail.kernel.auth import ID_PREFIX, Principal, Role
from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import AuthenticationFailed, NotFound
from ridehail.kernel.ids import new_id


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def register(
    session: AsyncSession,
    *,
    role: Role,
    name: str,
    email: str,
    password_hash: str,
    phone: str | None = None,
) -> Account:
    """Create an account; a duplicate email raises AlreadyExists (409)."""
    account = Account(
        id=new_id(ID_PREFIX[role]),
        role=role.value,
        email=normalize_email(email),
        password_hash=password_hash,
        name=name.strip(),
        phone=phone,
        created_at=utcnow(),
    )
    return await repository.add(session, account)


async def authenticate(
    session: AsyncSession, *, email: str, password: str, passwords: Passwords
) -> Principal:
    account = await repository.get_by_email(session, normalize_email(email))
    ok = await passwords.verify(account.password_hash if account else None, password)
    if account is None or not ok:
        raise AuthenticationFailed("wrong email or password")
    return Principal(subject_id=account.id, role=Role(account.role))


async def get_account(session: AsyncSession, account_id: str) -> Account:
    account = await repository.get(session, account_id)
    if account is None:
        raise NotFound("account not found")
    return account


@dataclass(frozen=True, slots=True)
class Contact:
    """How to reach a person outside the app (for notifications)."""

    account_id: str
    name: str
    email: str
    phone: str | None


async def contacts(session: AsyncSession, account_ids: Collection[str]) -> dict[str, Contact]:
    """Name, email and phone of each of ``account_ids`` that exists."""
    accounts = await repository.get_many(session, account_ids)
    return {a.id: Contact(a.id, a.name, a.email, a.phone) for a in accounts}
