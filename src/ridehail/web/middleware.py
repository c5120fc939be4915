"""Pure ASGI middleware: body size limit, request metrics and access logs.

Pure ASGI (not BaseHTTPMiddleware) so they add microseconds, not a task per request.
"""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ridehail.tally import DEFERRED

log = structlog.get_logger("ridehail.http")

HTTP_REQUESTS = Counter(
    "ridehail_http_requests_total",
    "HTTP requests by route and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "ridehail_http_request_duration_seconds",
    "HTTP request latency by route",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def problem_bytes(status: int, title: str, detail: str) -> bytes:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return json.dumps(body).encode()


async def _send_413(send: Send, limit: int) -> None:
    body = problem_bytes(413, "Content too large", f"the request body exceeds {limit} bytes")
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """413 for bodies over ``max_bytes``: refused from Content-Length before reading, or as
    soon as a streamed (chunked) body passes the limit, never after buffering it whole."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await _send_413(send, self.max_bytes)
                    return
        received = 0
        started = False
        rejected = False

        async def limited_receive() -> Message:
            # Past the limit: answer 413 now and tell the app the client went away. FastAPI
            # turns any exception raised while it reads a body into a 400, so raising here
            # would not do.
            nonlocal received, started, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started:
                        rejected = started = True
                        await _send_413(send, self.max_bytes)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if rejected:
                return  # the 413 has been sent; drop what the app says after it
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not rejected:
                raise


class HttpMetrics:
    """Counts and times HTTP requests by route template (never by raw path: ids would
    explode the label set) and writes one access-log line per request.

    Successful requests to ``quiet_routes`` are counted and timed but not logged: a city's
    drivers report their position 10-17 thousand times a second, and a log line each would
    cost more than the report itself (and a billion lines a day nobody reads). Their errors
    are still logged.
    """

    def __init__(self, *, access_log: bool = True, quiet_routes: frozenset[str] = frozenset()):
        self.access_log = access_log
        self.quiet_routes = quiet_routes
        # Label lookups take a lock and hash the label tuple; the children are few and
        # fixed once seen, so they are looked up once.
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, route: str, status: int, elapsed: float) -> None:
        counter = self._counters.get((method, route, status))
        if counter is None:
            counter = HTTP_REQUESTS.labels(method, route, str(status))
            self._counters[(method, route, status)] = counter
        timer = self._timers.get((method, route))
        if timer is None:
            timer = HTTP_LATENCY.labels(method, route)
            self._timers[(method, route)] = timer
        DEFERRED.inc(counter)
        DEFERRED.observe(timer, elapsed)
        if self.access_log and (status >= 300 or route not in self.quiet_routes):
            log.info(
                "http_request",
                method=method,
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )


class RequestMetrics:
    """:class:`HttpMetrics` for every HTTP request that passes through."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.observe(scope.get("method", ""), _route_template(scope), status, elapsed)


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
