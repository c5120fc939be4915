"""Helpers for the notification tests: feeding contract events in, waiting for what comes
out, and a real local HTTP server standing in for an integrator's webhook endpoint."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from ridehail import bootstrap
from ridehail.app import create_app
from ridehail.contracts import IntegrationEvent
from ridehail.db import add_event
from ridehail.messaging import Message
from ridehail.notifications import read_message_log
from tests.api.client import Api, User
from tests.api.conftest import Backend

#: Fast sender and webhook retries for tests (the defaults are seconds to an hour).
FAST = {
    "notifications_poll_s": 0.05,
    "notifications_retry_base_s": 0.05,
    "notifications_retry_cap_s": 0.2,
    "webhook_retry_base_s": 0.05,
    "webhook_retry_cap_s": 0.2,
    "webhook_max_attempts": 3,
    "webhook_timeout_s": 2.0,
    # The receivers of these tests listen on 127.0.0.1.
    "webhook_allow_private_networks": True,
}


#: Every role but payments: the synthetic events these tests feed in (rides that never
#: existed) would otherwise be charged, and the payments' own events would tell the same
#: users more. Notifications must work from the events alone.
ROLES = bootstrap.ALL_ROLES - {"payments"}


def app_factory(backend: Backend) -> Callable[..., AbstractAsyncContextManager[Api]]:
    """Like the ``make_api`` fixture, with :data:`ROLES`."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Api]:
        app = create_app(backend.settings(**overrides), roles=ROLES, access_log=False)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield Api(client, app)

    return factory


def settings(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {**FAST, "notifications_log_path": tmp_path / "messages.jsonl", **extra}


async def emit(api: Api, event: IntegrationEvent) -> None:
    """As a producer does: the event in the outbox of a committed transaction."""
    async with api.app.state.runtime.db.transaction() as session:
        add_event(session, event)


async def publish(api: Api, event: IntegrationEvent) -> None:
    """Straight onto the bus (as a relay that publishes twice would)."""
    message = Message(id=event.event_id, topic=event.topic, payload=event.to_payload())
    await api.app.state.runtime.bus.publish(message)


async def inbox(api: Api, user: User, **params: Any) -> dict[str, Any]:
    resp = await api.http.get("/api/v1/notifications", params=params, headers=user.headers)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def wait_for(
    check: Callable[[], Any], *, timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll the async ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


async def wait_for_kinds(api: Api, user: User, count: int) -> list[str]:
    async def kinds() -> list[str] | None:
        found = [n["kind"] for n in (await inbox(api, user, page_size=100))["notifications"]]
        return found if len(found) >= count else None

    return list(await wait_for(kinds, what=f"{count} notifications"))


def messages(path: Path) -> list[dict[str, Any]]:
    return read_message_log(path)


async def wait_for_messages(path: Path, count: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        lines = messages(path)
        return lines if len(lines) >= count else None

    return list(await wait_for(enough, what=f"{count} email/SMS lines"))


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1: answers ``fail_first`` requests with 500 (or
    every one, with ``always_fail``), then 200; records each request."""

    fail_first: int = 0
    always_fail: bool = False
    requests: list[Received] = field(default_factory=list)
    url: str = ""

    def answer(self) -> int:
        if self.always_fail or len(self.requests) <= self.fail_first:
            return 500
        return 200


@contextmanager
def receiver(fail_first: int = 0, *, always_fail: bool = False) -> Iterator[Receiver]:
    state = Receiver(fail_first=fail_first, always_fail=always_fail)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                state.requests.append(Received(dict(self.headers.items()), body))
                code = state.answer()
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
