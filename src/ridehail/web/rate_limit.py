"""429 for over-limit clients (API.md): at most ``limit`` requests per caller per minute.

The caller is the token's subject when the request carries a valid bearer token, else the
client address. Fixed one-minute windows: a counter per caller and minute, in Redis when
the process has one (so every API process counts together; the key expires with its
window), else in this process. Over the limit: 429 problem+json with ``Retry-After`` (the
seconds to the next window), and the request goes no further. WebSocket upgrades and the
location fast path (served before this stack) are not counted. While Redis does not
answer, each process counts alone (a warning once a window says so) rather than refusing
everything: the request goes on, and a route that needs Redis answers 503 itself.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send

from ridehail.kernel.errors import AuthenticationFailed
from ridehail.web.errors import UNREACHABLE
from ridehail.web.middleware import problem_bytes

log = structlog.get_logger("ridehail.web")

WINDOW_S = 60


class _LocalCounter:
    """Counts per (caller, window) in this process; old windows are dropped as time moves."""

    def __init__(self) -> None:
        self._window = -1
        self._counts: dict[str, int] = {}

    def hit(self, caller: str, window: int) -> int:
        if window != self._window:
            self._window, self._counts = window, {}
        count = self._counts.get(caller, 0) + 1
        self._counts[caller] = count
        return count


class RateLimit:
    def __init__(self, app: ASGIApp, *, limit: int, clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.limit = limit
        self._clock = clock
        self._local = _LocalCounter()
        self._warned_window = -1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.limit <= 0:
            await self.app(scope, receive, send)
            return
        runtime = scope["app"].state.runtime
        caller = _caller(scope, runtime)
        now = self._clock()
        window = int(now // WINDOW_S)
        count = await self._count(runtime, caller, window)
        if count <= self.limit:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil((window + 1) * WINDOW_S - now))
        body = problem_bytes(
            429,
            "Too many requests",
            f"at most {self.limit} requests a minute; retry in {retry_after} s",
        )
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"retry-after", str(retry_after).encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _count(self, runtime: Any, caller: str, window: int) -> int:
        if runtime.redis is None:
            return self._local.hit(caller, window)
        key = f"{runtime.settings.redis_key_prefix}rl:{caller}:{window}"
        try:
            async with runtime.redis.pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, WINDOW_S + 5)
                count, _ = await pipe.execute()
        except UNREACHABLE as exc:
            if window != self._warned_window:
                self._warned_window = window
                log.warning("rate_limit_counting_locally", error=type(exc).__name__)
            return self._local.hit(caller, window)
        return int(count)


def _caller(scope: Scope, runtime: Any) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token:
                try:
                    return f"sub:{runtime.verify_token(token.strip()).subject_id}"
                except AuthenticationFailed:
                    break
            break
    client = scope.get("client")
    return f"ip:{client[0] if client else 'unknown'}"
