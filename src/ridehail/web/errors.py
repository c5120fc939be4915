"""Every error leaves as RFC 9457 problem+json, mapped from its meaning in one place."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ridehail.kernel import errors

log = structlog.get_logger("ridehail.web")

PROBLEM_JSON = "application/problem+json"

STATUS_BY_ERROR: dict[type[errors.DomainError], int] = {
    errors.AuthenticationFailed: 401,
    errors.PermissionDenied: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidRequest: 422,
    errors.ServiceUnavailable: 503,
}

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


#: A backing service that does not answer (Redis down or restarting): the request may
#: well succeed in a moment, so it is 503 with Retry-After, not 500. Apps keep the report
#: and send it again (drivers' apps buffer locations while they cannot send).
UNREACHABLE: tuple[type[Exception], ...] = (RedisConnectionError, RedisTimeoutError)
RETRY_AFTER_S = 1


def unreachable_problem(exc: Exception, path: str) -> JSONResponse:
    """The answer when a backing service did not answer (see :data:`UNREACHABLE`)."""
    log.warning("backend_unreachable", path=path, error=type(exc).__name__, detail=str(exc))
    return problem(
        503,
        "a backing service is unreachable; try again shortly",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def status_for(exc: errors.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400


def domain_problem(exc: errors.DomainError) -> JSONResponse:
    """The answer to a domain error, wherever it was raised."""
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return problem(status, exc.detail, title=exc.title, headers=headers)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.DomainError)
    return domain_problem(exc)


def _clean_error(err: Any) -> dict[str, Any]:
    # Never echo the input back: it may be a password.
    return {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [_clean_error(e) for e in exc.errors()]
    return problem(422, "the request is not valid; see errors", errors=details)


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


async def _unreachable(request: Request, exc: Exception) -> JSONResponse:
    return unreachable_problem(exc, request.url.path)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path, error=type(exc).__name__)
    return problem(500, "an unexpected error occurred; it has been logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for unreachable in UNREACHABLE:
        app.add_exception_handler(unreachable, _unreachable)
    app.add_exception_handler(Exception, _unexpected)
