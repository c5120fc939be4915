"""Passwords (argon2id) and access tokens (JWT, HS256 pinned server-side)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ridehail.kernel.auth import Principal, Role
from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import AuthenticationFailed
from ridehail.kernel.ids import new_id

ALGORITHM = "HS256"
#: Seconds of clock difference tolerated on ``exp``/``nbf``/``iat``.
LEEWAY_S = 5
#: Verified tokens remembered; a little above the number of drivers online in a big city.
VERIFIED_CACHE_SIZE = 100_000


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
    """Issues and verifies access tokens. The algorithm is fixed here, never read from a token.

    A driver's app presents the same token with every location report, every few seconds,
    and an HMAC check plus claim parsing costs about 35 µs (timeit), half of the server CPU
    a whole ingest request takes under load (docs/benchmarks.md). So a token that passed
    the full check is remembered with its validity window, and a later presentation of the
    very same string is accepted from memory while that window lasts (and refused from
    memory once it has passed). The key never changes while the process runs, so nothing
    the full check would decide differently is skipped.
    """

    def __init__(
        self,
        *,
        secret: str,
        issuer: str,
        audience: str,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self.ttl_s = ttl_s
        self._clock = clock
        # token -> (principal, not before, expires): epoch seconds, leeway included.
        self._verified: dict[str, tuple[Principal, float, float]] = {}

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
        known = self._verified.get(token)
        if known is not None:
            principal, not_before, expires = known
            if not_before <= self._clock() < expires:
                return principal
            del self._verified[token]
            raise AuthenticationFailed("invalid or expired access token")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
                leeway=LEEWAY_S,
            )
            role = Role(claims["role"])
            subject = claims["sub"]
            expires = float(claims["exp"]) + LEEWAY_S
            not_before = float(claims.get("nbf", claims["iat"])) - LEEWAY_S
        except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
            raise AuthenticationFailed("invalid or expired access token") from exc
        if not isinstance(subject, str):
            raise AuthenticationFailed("invalid access token subject")
        principal = Principal(subject_id=subject, role=role)
        self._remember(token, (principal, not_before, expires))
        return principal

    def _remember(self, token: str, entry: tuple[Principal, float, float]) -> None:
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            # Dicts keep insertion order: drop the oldest remembered token.
            del self._verified[next(iter(self._verified))]
        self._verified[token] = entry
