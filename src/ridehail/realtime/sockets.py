"""WebSocket plumbing: authenticate with the first message, then pump two directions until
either side closes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from ridehail.kernel.auth import Principal
from ridehail.kernel.errors import AuthenticationFailed
from ridehail.runtime import Runtime

AUTH_TIMEOUT_S = 10.0

# Close codes: 1008 policy violation for malformed traffic; 4xxx mirror HTTP statuses.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_POLICY = 1008


async def close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=code, reason=reason)


async def authenticate(websocket: WebSocket, runtime: Runtime) -> Principal | None:
    """Wait for ``{"type": "auth", "access_token": ...}``; tokens never go in URLs.
    Closes the socket and returns None when the first message is not a valid one."""
    try:
        raw = await asyncio.wait_for(websocket.receive_text(), timeout=AUTH_TIMEOUT_S)
        message = json.loads(raw)
    except (TimeoutError, ValueError, KeyError, WebSocketDisconnect):
        await close(websocket, CLOSE_UNAUTHORIZED, "send {type: auth, access_token} first")
        return None
    token = message.get("access_token") if isinstance(message, dict) else None
    if not isinstance(message, dict) or message.get("type") != "auth" or not isinstance(token, str):
        await close(websocket, CLOSE_UNAUTHORIZED, "send {type: auth, access_token} first")
        return None
    try:
        return runtime.verify_token(token)
    except AuthenticationFailed:
        await close(websocket, CLOSE_UNAUTHORIZED, "invalid or expired access token")
        return None


async def send(websocket: WebSocket, message: dict[str, Any]) -> None:
    await websocket.send_text(json.dumps(message, separators=(",", ":")))


async def run_until_closed(
    websocket: WebSocket,
    *,
    outbound: Callable[[], Coroutine[Any, Any, None]],
    on_message: Callable[[dict[str, Any]], Awaitable[None]],
) -> None:
    """Run ``outbound`` (pushes to the client) while feeding client messages to
    ``on_message``; stop when the client goes away or ``outbound`` returns."""

    async def inbound() -> None:
        while True:
            try:
                raw = await websocket.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                return
            try:
                message = json.loads(raw)
            except ValueError:
                await send(websocket, {"type": "error", "status": 422, "detail": "not JSON"})
                continue
            if not isinstance(message, dict):
                await send(websocket, {"type": "error", "status": 422, "detail": "not an object"})
                continue
            await on_message(message)

    tasks = [asyncio.create_task(inbound()), asyncio.create_task(outbound())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                if not isinstance(exc, WebSocketDisconnect | RuntimeError):
                    raise exc  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task
