"""``Idempotency-Key`` on every POST (API.md): a client that retries a request whose answer
it never saw gets the first answer again instead of a second ride, account or charge.

Per caller (the token's subject; requests without a token share one anonymous scope) and
key, the first request's status and body are stored for 24 hours and replayed to a retry
with the same body (with ``Idempotent-Replayed: true``); the same key with another body is
422; a retry while the first still runs is 409 with ``Retry-After``. A first request that
fails on our side (5xx) is not stored, so its retry runs again. A request with a token that
does not verify is left to the route (401) and stores nothing.

Pure ASGI, inside the body-size limit: the body is buffered (it is bounded) to fingerprint
it, then handed to the route unchanged.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ridehail.db import idempotency
from ridehail.kernel.clock import utcnow
from ridehail.kernel.errors import AuthenticationFailed
from ridehail.web.middleware import problem_bytes

HEADER = b"idempotency-key"
#: Printable ASCII without spaces at the ends, as Stripe-style keys (UUIDs and the like).
_VALID_KEY = re.compile(r"[!-~](?:[ -~]{0,253}[!-~])?")
ANONYMOUS = "anonymous"


async def _send(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _problem(send: Send, status: int, title: str, detail: str, **extra: str) -> None:
    headers = [(b"content-type", b"application/problem+json")]
    headers += [(k.replace("_", "-").encode(), v.encode()) for k, v in extra.items()]
    await _send(send, status, problem_bytes(status, title, detail), headers)


class Idempotency:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        raw_key = headers.get(HEADER)
        if raw_key is None:
            await self.app(scope, receive, send)
            return
        key = raw_key.decode("latin-1")
        if not _VALID_KEY.fullmatch(key):
            await _problem(
                send,
                422,
                "Invalid Idempotency-Key",
                "Idempotency-Key must be 1 to 255 printable ASCII characters",
            )
            return
        runtime = scope["app"].state.runtime
        caller = _caller(headers.get(b"authorization"), runtime)
        if caller is None:  # a token that does not verify: the route answers 401
            await self.app(scope, receive, send)
            return

        body, more = await _read_body(receive)
        if more is None:  # the client went away
            return
        digest = hashlib.sha256()
        for part in (scope["method"], scope["path"], scope.get("query_string", b"")):
            digest.update(part if isinstance(part, bytes) else part.encode())
            digest.update(b"\0")
        digest.update(body)
        fingerprint = digest.hexdigest()

        async with runtime.db.transaction() as session:
            stored = await idempotency.claim(
                session, caller=caller, key=key, fingerprint=fingerprint, now=utcnow()
            )
        if stored is not None:
            await _answer_from(stored, fingerprint, send)
            return
        await self._run_and_store(scope, body, send, runtime=runtime, caller=caller, key=key)

    async def _run_and_store(
        self, scope: Scope, body: bytes, send: Send, *, runtime: Any, caller: str, key: str
    ) -> None:
        delivered = False

        async def replay_body() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return {"type": "http.disconnect"}

        status = 500
        content_type: str | None = None
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type":
                        content_type = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_body, capture)
        except BaseException:
            async with runtime.db.transaction() as session:
                await idempotency.release(session, caller=caller, key=key)
            raise
        async with runtime.db.transaction() as session:
            if status >= 500:
                await idempotency.release(session, caller=caller, key=key)
            else:
                await idempotency.complete(
                    session,
                    caller=caller,
                    key=key,
                    status=status,
                    content_type=content_type,
                    body=b"".join(chunks),
                )


def _caller(authorization: bytes | None, runtime: Any) -> str | None:
    if authorization is None:
        return ANONYMOUS
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        return str(runtime.verify_token(token.strip()).subject_id)
    except AuthenticationFailed:
        return None


async def _read_body(receive: Receive) -> tuple[bytes, bool | None]:
    """The whole request body; ``None`` as the second item if the client disconnected."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"", None
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), False


async def _answer_from(stored: idempotency.Stored, fingerprint: str, send: Send) -> None:
    if stored.fingerprint != fingerprint:
        await _problem(
            send,
            422,
            "Idempotency-Key reused",
            "this Idempotency-Key was used with a different request; use a new key",
        )
    elif stored.state != idempotency.DONE or stored.status is None:
        await _problem(
            send,
            409,
            "Request in progress",
            "a request with this Idempotency-Key is still running; retry shortly",
            retry_after="1",
        )
    else:
        headers = [(b"idempotent-replayed", b"true")]
        if stored.content_type:
            headers.append((b"content-type", stored.content_type.encode("latin-1")))
        await _send(send, stored.status, stored.body or b"", headers)
