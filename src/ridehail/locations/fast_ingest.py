"""The single-point location PUT, served ahead of FastAPI's per-request machinery.

``PUT /api/v1/drivers/{id}/location`` is most of the traffic the system takes (50,000
drivers, one report every 3-5 s each). Through FastAPI it costs several times what the work
itself does: five layers of middleware, dependency resolution, a Request object, a Response
object. The application hands this one request to :class:`LocationIngest` before any of
that; it reads the body, decodes it with msgspec into ``LocationReport``, which accepts
nothing the documented route's Pydantic model (``LocationIn``) refuses (a body carrying
``recorded_at`` goes through ``LocationIn`` itself), checks the token with the same
verifier, applies the same rule (a driver moves only itself), calls the same
``service.ingest``, and counts and times the request under the route's template like every
other.

Whatever it does not accept - a body over the size limit, an unexpected content type, a
body the model refuses, a missing or bad token, another driver's id - it hands on untouched
(the body replayed) to the full application, whose documented route gives the documented
answer: one place decides every error, and this path can never accept something the route
would refuse. Nothing has been written when it hands over. A domain error raised by ingest
(a fix from the future, refused before anything is stored) is answered here with the same
problem+json the route's error handler produces.
"""

from __future__ import annotations

import time
from datetime import datetime

import msgspec
import structlog
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ridehail.kernel.auth import Role
from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import AuthenticationFailed, DomainError
from ridehail.locations import service
from ridehail.locations.ports import LocationFix
from ridehail.locations.schemas import LocationIn, LocationReport
from ridehail.runtime import Runtime
from ridehail.web.errors import UNREACHABLE, domain_problem, problem, unreachable_problem
from ridehail.web.middleware import HttpMetrics

log = structlog.get_logger("ridehail.web")

PREFIX = "/api/v1/drivers/"
SUFFIX = "/location"
ROUTE_PATH = PREFIX + "{driver_id}" + SUFFIX

_NO_CONTENT: Message = {"type": "http.response.start", "status": 204, "headers": []}
_EMPTY_BODY: Message = {"type": "http.response.body", "body": b""}
_REPORT = msgspec.json.Decoder(LocationReport)


def driver_id_of(path: str) -> str | None:
    """The driver id if ``path`` is one driver's location resource, else None."""
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    driver_id = path[len(PREFIX) : -len(SUFFIX)]
    return driver_id if driver_id and "/" not in driver_id else None


def _is_json(content_type: bytes | None) -> bool:
    """``application/json`` with or without parameters: what apps send. The route's rules
    for other types (``+json`` suffixes, no type at all) are left to the route."""
    if content_type is None:
        return False
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json"


class LocationIngest:
    """Serves the location PUT, or hands it to ``fallback`` (the full application)."""

    def __init__(self, *, metrics: HttpMetrics, max_body_bytes: int) -> None:
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes
        #: Set by the application's lifespan once the adapters are running; until then
        #: (and after) every request goes to the route, which answers as it would.
        self.runtime: Runtime | None = None

    async def serve(
        self, scope: Scope, receive: Receive, send: Send, driver_id: str, fallback: ASGIApp
    ) -> None:
        start = time.perf_counter()
        authorization: bytes | None = None
        content_type: bytes | None = None
        declared = 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = int(value) if value.isdigit() else self.max_body_bytes + 1
        if authorization is None or not _is_json(content_type) or declared > self.max_body_bytes:
            await fallback(scope, receive, send)
            return
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):
            body: bytes = message.get("body", b"")  # all of it at once: what apps send
            complete = True
        else:
            body, complete = await _read_body(message, receive, self.max_body_bytes)
        runtime = self.runtime
        now = utcnow()
        fix = (
            _parse(body, driver_id, now)
            if complete
            and len(body) <= self.max_body_bytes
            and runtime is not None
            and _may_move(runtime, driver_id, authorization)
            else None
        )
        if runtime is None or fix is None:
            await fallback(scope, _replay(body, complete, receive), send)
            return
        # Inline rather than in helpers: each coroutine between here and the store's future
        # is one more frame to suspend and resume per request.
        try:
            try:
                await service.ingest(
                    runtime.locations,
                    fix,
                    feed=runtime.pubsub,
                    now=now,
                    max_accuracy_m=runtime.settings.location_max_accuracy_m,
                )
            except DomainError as exc:
                response = domain_problem(exc)
                await response(scope, _no_body, send)
                status = response.status_code
            else:
                await send(_NO_CONTENT)
                await send(_EMPTY_BODY)
                status = 204
        except UNREACHABLE as exc:  # Redis down: 503, as the route would answer
            status = 503
            await unreachable_problem(exc, scope["path"])(scope, _no_body, send)
        except Exception:
            log.exception("unhandled_error", path=ROUTE_PATH)
            status = 500
            await problem(500, "an unexpected error occurred; it has been logged")(
                scope, _no_body, send
            )
        self.metrics.observe("PUT", ROUTE_PATH, status, time.perf_counter() - start)


def _may_move(runtime: Runtime, driver_id: str, authorization: bytes) -> bool:
    """Whether the bearer token is the driver's own."""
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    try:
        principal = runtime.verify_token(token.strip())
    except AuthenticationFailed:
        return False
    return principal.role is Role.DRIVER and principal.subject_id == driver_id


def _parse(body: bytes, driver_id: str, now: datetime) -> LocationFix | None:
    """The fix the body describes, or None if the route's model would refuse it."""
    try:
        report = _REPORT.decode(body)
    except msgspec.DecodeError:  # also every ValidationError
        return None
    if report.recorded_at is None:
        return report.to_fix(driver_id, now=now)
    try:  # the device's own time: the route's model is the judge of dates
        return LocationIn.model_validate_json(body).to_fix(driver_id, now=now)
    except ValidationError:
        return None


async def _read_body(first: Message, receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body that begins with ``first``, and whether it is all there: False if the
    client went away or the body grew past ``limit`` (the rest is left unread for the
    application to refuse)."""
    chunks: list[bytes] = []
    size = 0
    message = first
    while True:
        if message["type"] != "http.request":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False
        message = await receive()


def _replay(body: bytes, complete: bool, receive: Receive) -> Receive:
    """A receive channel that gives what was already read first, then the real one."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": not complete}]

    async def replayed() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replayed


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}
