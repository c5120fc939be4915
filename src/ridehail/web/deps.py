"""FastAPI dependencies: the runtime, the caller, a unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from ridehail.kernel.auth import Principal, Role
from ridehail.kernel.errors import AuthenticationFailed, PermissionDenied
from ridehail.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /api/v1/auth/token")


# Dependencies are `async def` even though they never await: FastAPI runs a plain `def`
# dependency in its threadpool, a thread hop on every request of the hottest paths.


async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_principal(
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthenticationFailed("missing bearer token")
    return runtime.verify_token(credentials.credentials)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_role(principal: Principal, *roles: Role) -> None:
    if principal.role not in roles:
        allowed = " or ".join(r.value for r in roles)
        raise PermissionDenied(f"only a {allowed} may do this")


def require_self_driver(principal: Principal, driver_id: str) -> None:
    """Only the driver ``driver_id`` may act on it: other roles and other drivers get 403."""
    require_role(principal, Role.DRIVER)
    if principal.subject_id != driver_id:
        raise PermissionDenied("a driver may act only on their own account")


async def read_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """A read-only session for GET handlers (nothing is committed)."""
    async with runtime.db.read_only() as session:
        yield session


ReadSession = Annotated[AsyncSession, Depends(read_session)]
