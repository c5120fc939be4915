"""The simulator's only way into the service: its public HTTP API and WebSockets, every call
timed and every failure recorded by endpoint (the route template, not the concrete path)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

from ridehail.simulator.metrics import Recorder

_IDS = re.compile(r"/(drv|rdr|ride|pay|ntf|adm)_[0-9a-z]+")


def template(path: str) -> str:
    """``/api/v1/rides/ride_01ab:accept`` -> ``/api/v1/rides/{id}:accept``."""
    return _IDS.sub("/{id}", path)


@dataclass
class Answer:
    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class ApiClient:
    """One HTTP connection pool for every simulated user; ``clock`` gives simulated seconds
    (for the error samples)."""

    def __init__(
        self,
        base_url: str,
        recorder: Recorder,
        clock: Callable[[], float],
        *,
        max_connections: int = 200,
        timeout_s: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.ws_url = "ws" + self.base_url.removeprefix("http")
        self._recorder = recorder
        self._clock = clock
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self.http = httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=timeout_s)

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        retries_on_429: int = 5,
    ) -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        endpoint = f"{method} {template(path)}"
        for _ in range(retries_on_429 + 1):
            started = time.perf_counter()
            try:
                resp = await self.http.request(method, path, json=json_body, headers=headers)
            except httpx.HTTPError as exc:
                ms = (time.perf_counter() - started) * 1000
                self._recorder.request(endpoint, ms, 0, self._clock(), repr(exc))
                return Answer(0, None)
            ms = (time.perf_counter() - started) * 1000
            body: Any = None
            if resp.content:
                try:
                    body = resp.json()
                except ValueError:
                    body = resp.text
            self._recorder.request(
                endpoint, ms, resp.status_code, self._clock(), "" if resp.is_success else str(body)
            )
            if resp.status_code == 429:
                await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))
                continue
            return Answer(resp.status_code, body)
        return Answer(429, None)

    async def sign_up(self, role: str, index: int, run: str, **extra: Any) -> tuple[str, str]:
        """A new rider or driver account; returns (id, access token)."""
        email = f"sim-{run}-{role}{index}@example.com"
        password = "simulated-pass"  # noqa: S105 - a simulated account
        body = {"name": f"Sim {role} {index}", "email": email, "password": password, **extra}
        made = await self.call("POST", f"/api/v1/{role}s", json_body=body)
        if made.status != 201:
            raise RuntimeError(f"could not create {role} {index}: {made.status} {made.body}")
        token = await self.call(
            "POST", "/api/v1/auth/token", json_body={"email": email, "password": password}
        )
        if token.status != 200:
            raise RuntimeError(f"could not sign in {role} {index}: {token.status}")
        return str(token.body["subject_id"]), str(token.body["access_token"])

    async def socket(self, path: str, token: str) -> ClientConnection:
        ws = await connect(self.ws_url + path, max_size=2**20, open_timeout=30)
        await ws.send(json.dumps({"type": "auth", "access_token": token}))
        return ws
