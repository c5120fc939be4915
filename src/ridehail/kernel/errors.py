"""Domain errors. Each names what went wrong; the web layer maps each kind to one HTTP status."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a use case may raise on purpose."""

    title = "Domain error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    title = "Not found"


class Conflict(DomainError):
    """The resource's current state does not allow the operation (an illegal transition)."""

    title = "Conflict"


class AlreadyExists(Conflict):
    title = "Already exists"


class PermissionDenied(DomainError):
    title = "Forbidden"


class AuthenticationFailed(DomainError):
    title = "Unauthorized"


class InvalidRequest(DomainError):
    """Input that is well-formed but not acceptable (validated beyond the schema)."""

    title = "Unprocessable content"


class ServiceUnavailable(DomainError):
    title = "Service unavailable"
