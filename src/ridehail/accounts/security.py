"""Passwords (argon2id) and access tokens (JWT, HS256 pinned server-side)."""

from __future__ import annotations

import asyncio
import hmac
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from binascii import Error as Base64Error
from collections.abc import Callable
from datetime import timedelta

import jwt
import msgspec
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


class _OwnClaims(msgspec.Struct, forbid_unknown_fields=True):
    """The claims :meth:`Tokens.issue` writes, exactly: any other shape is PyJWT's to judge."""

    sub: str
    role: str
    iss: str
    aud: str
    iat: int
    nbf: int
    exp: int
    jti: str


_OWN_CLAIMS = msgspec.json.Decoder(_OwnClaims)

#: A verified token's principal and validity window: (principal, not before, expires), epoch
#: seconds with the leeway applied.
_Entry = tuple[Principal, float, float]


class Tokens:
    """Issues and verifies access tokens. The algorithm is fixed here, never read from a token.

    A driver's app presents the same token with every location report, every few seconds.
    So a token that passed the full check is remembered with its validity window, and a
    later presentation of the very same string is accepted from memory while that window
    lasts (and refused from memory once it has passed). The key never changes while the
    process runs, so nothing the full check would decide differently is skipped.

    The first presentation is checked in full, and that is dear too: PyJWT 2.15 takes about
    60 µs a token here (a third of it checking the base64 alphabet one character at a
    time in a generator, under cProfile; docs/benchmarks.md, the soak), and when
    a process starts, or the soak begins, every driver of the city presents a token it has
    not seen within a few seconds. A token in exactly the form :meth:`issue` writes - the
    same header segment, the same set of claims, all of them strings or integers - is
    therefore checked here: its HMAC-SHA256 over the first two segments, in C
    (``hmac.digest``) and compared in constant time with the third as the canonical
    encoding, then the issuer, audience and validity window as PyJWT checks them. About a
    fifth of the cost. Every other token goes to PyJWT, which decides as before; a test
    holds the two to the same answer for altered, expired, foreign and malformed tokens.
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
        self._key = secret.encode()
        self._issuer = issuer
        self._audience = audience
        self.ttl_s = ttl_s
        self._clock = clock
        # The header segment PyJWT writes for our algorithm, and the dot after it.
        self._own_header = jwt.encode({}, secret, algorithm=ALGORITHM).encode().partition(b".")[0]
        self._own_header += b"."
        # token -> (principal, not before, expires)
        self._verified: dict[str, _Entry] = {}

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
        entry = self._verified.get(token)
        known = entry is not None
        if entry is None:
            entry = self._check_own(token) or self._check(token)
        principal, not_before, expires = entry
        if not not_before <= self._clock() < expires:
            if known:
                del self._verified[token]
            raise AuthenticationFailed("invalid or expired access token")
        if not known:
            self._remember(token, entry)
        return principal

    def _check_own(self, token: str) -> _Entry | None:
        """The entry for a token in the form :meth:`issue` writes; None for any other form
        (for PyJWT to judge). Refuses one whose signature or claims are wrong."""
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            return None
        signing_input, _, signature = raw.rpartition(b".")
        header = self._own_header
        if not signing_input.startswith(header) or b"." in signing_input[len(header) :]:
            return None
        payload = signing_input[len(header) :]
        try:
            claims = _OWN_CLAIMS.decode(urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
        except (Base64Error, ValueError, msgspec.DecodeError):  # not our form: PyJWT's call
            return None
        expected = urlsafe_b64encode(hmac.digest(self._key, signing_input, "sha256")).rstrip(b"=")
        if not hmac.compare_digest(expected, signature):
            raise AuthenticationFailed("invalid or expired access token")
        if claims.iss != self._issuer or claims.aud != self._audience:
            raise AuthenticationFailed("invalid or expired access token")
        try:
            role = Role(claims.role)
        except ValueError as exc:
            raise AuthenticationFailed("invalid or expired access token") from exc
        # PyJWT refuses when exp <= now - leeway, and when nbf or iat > now + leeway.
        not_before = max(claims.nbf, claims.iat) - LEEWAY_S
        return Principal(subject_id=claims.sub, role=role), not_before, claims.exp + LEEWAY_S

    def _check(self, token: str) -> _Entry:
        """The full check, by PyJWT."""
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
        return Principal(subject_id=subject, role=role), not_before, expires

    def _remember(self, token: str, entry: _Entry) -> None:
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            # Dicts keep insertion order: drop the oldest remembered token.
            del self._verified[next(iter(self._verified))]
        self._verified[token] = entry
