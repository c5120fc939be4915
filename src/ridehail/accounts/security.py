"""Passwords (argon2id) and access tokens (JWT, HS256 pinned server-side)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ridehail.kernel.auth import Principal, Role
from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import AuthenticationFailed
from ridehail.kernel.ids import new_id

ALGORITHM = "HS256"


class Passwords:
    """argon2id hashing, run off the event loop (it is deliberately slow)."""

    def __init__(self, *, time_cost: int, memory_kib: int) -> None:
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        self._dummy_hash = self._hasher.hash("not-a-real-password")

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; an unknown user costs the same time as a known one."""
        target = password_hash or self._dummy_hash

        def check() -> bool:
            try:
                return bool(self._hasher.verify(target, password))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        matched = await asyncio.to_thread(check)
        return matched and password_hash is not None


class Tokens:
    """Issues and verifies access tokens. The algorithm is fixed here, never read from a token."""

    def __init__(self, *, secret: str, issuer: str, audience: str, ttl_s: int) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self.ttl_s = ttl_s

    def issue(self, principal: Principal) -> str:
        now = utcnow()
        claims = {
            "sub": principal.subject_id,
            "role": principal.role.value,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": now + timedelta(seconds=self.ttl_s),
            "jti": new_id("tok"),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                leeway=5,
            )
            role = Role(claims["role"])
            subject = claims["sub"]
        except (jwt.PyJWTError, KeyError, ValueError) as exc:
            raise AuthenticationFailed("invalid or expired access token") from exc
        if not isinstance(subject, str):
            raise AuthenticationFailed("invalid access token subject")
        return Principal(subject_id=subject, role=role)
