from __future__ import annotations

from fastapi import APIRouter, Request, status

from ridehail.accounts import service
from ridehail.accounts.schemas import RiderCreate, RiderOut, TokenOut, TokenRequest
from ridehail.accounts.security import Passwords, Tokens
from ridehail.kernel.auth import Role
from ridehail.web.deps import PrincipalDep, ReadSession, RuntimeDep, require_role

router = APIRouter(prefix="/api/v1", tags=["accounts"])


def passwords(request: Request) -> Passwords:
    value: Passwords = request.app.state.passwords
    return value


def tokens(request: Request) -> Tokens:
    value: Tokens = request.app.state.tokens
    return value


@router.post("/riders", status_code=status.HTTP_201_CREATED, response_model=RiderOut)
async def register_rider(body: RiderCreate, request: Request, runtime: RuntimeDep) -> RiderOut:
    """Sign up as a rider. A used email is 409."""
    password_hash = await passwords(request).hash(body.password)
    async with runtime.db.transaction() as session:
        account = await service.register(
            session,
            role=Role.RIDER,
            name=body.name,
            email=str(body.email),
            password_hash=password_hash,
            phone=body.phone,
        )
    return RiderOut(
        rider_id=account.id,
        name=account.name,
        email=account.email,
        phone=account.phone,
        created_at=account.created_at,
    )


@router.post("/auth/token", response_model=TokenOut)
async def issue_token(body: TokenRequest, request: Request, session: ReadSession) -> TokenOut:
    """Exchange email and password for a bearer access token."""
    principal = await service.authenticate(
        session, email=str(body.email), password=body.password, passwords=passwords(request)
    )
    issuer = tokens(request)
    return TokenOut(
        access_token=issuer.issue(principal),
        expires_in=issuer.ttl_s,
        subject_id=principal.subject_id,
        role=principal.role.value,
    )


@router.get("/riders/me", response_model=RiderOut)
async def me(principal: PrincipalDep, session: ReadSession) -> RiderOut:
    require_role(principal, Role.RIDER)
    account = await service.get_account(session, principal.subject_id)
    return RiderOut(
        rider_id=account.id,
        name=account.name,
        email=account.email,
        phone=account.phone,
        created_at=account.created_at,
    )
